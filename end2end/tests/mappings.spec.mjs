// Importing the connector spec's YAML, fixing a mistake the check reports, saving a version.
import { test, expect } from '@playwright/test';
import { open, signUp, uniqueEmail, expectNoPageErrors } from './helpers.mjs';

test('import the seed YAML, fix the reported mistake, save a version, export it', async ({ page }) => {
  await signUp(page, { company: 'Mapper', email: uniqueEmail('map'), password: 'correct horse battery' });
  await expect(page).toHaveURL(/\/t\/[0-9a-f-]{36}$/);
  const base = new URL(page.url()).pathname;
  await open(page, `${base}/mappings`);
  const yaml = page.locator('#yaml');
  const seed = await yaml.inputValue();
  expect(seed).toContain('person_mapping:');

  // A mistake: two Pipedrive paths into one attribute.
  await yaml.fill(seed.replace('first_name: FIRSTNAME', 'first_name: FULLNAME'));
  await page.getByRole('button', { name: 'Check and save' }).click();
  await expect(page.getByRole('alert')).toContainText('person_mapping.first_name: FULLNAME is already the target of name');

  await page.locator('#yaml').fill(seed);
  await page.getByRole('button', { name: 'Check and save' }).click();
  await expect(page.getByRole('status')).toContainText('Saved as version 1.');
  await expect(page.locator('#versions')).toContainText('1');

  const download = await page.request.get(`${base}/mappings/export.yaml`);
  expect(download.status()).toBe(200);
  const text = await download.text();
  expect(text).toContain('customers: 62');
  expect(text).not.toContain('api_token');
  expectNoPageErrors(page);
});
