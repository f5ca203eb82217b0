// Connecting Pipedrive through the sandbox's OAuth consent page, and Brevo with a key that is
// checked before it is saved. scripts/test runs a sandbox on 127.0.0.1:4110 (Pipedrive) and
// :4120 (Brevo) for these tests.
import { test, expect } from '@playwright/test';
import { open, signUp, uniqueEmail, expectNoPageErrors, connectPipedriveOAuth } from './helpers.mjs';

const BREVO_KEY = 'xkeysib-sandbox-0000000000000000000000000000000000000000000000000000000000000000-sandbox';

test('connect Pipedrive on the consent page; a bad Brevo key is refused, a good one saved and masked', async ({ page }) => {
  await signUp(page, { company: 'Connectors', email: uniqueEmail('conn'), password: 'correct horse battery' });
  await expect(page).toHaveURL(/\/t\/[0-9a-f-]{36}$/);
  const base = new URL(page.url()).pathname;
  await open(page, `${base}/connections`);
  await expect(page.getByTestId('sandbox-notice')).toBeVisible();

  await connectPipedriveOAuth(page);
  await expect(page.locator('#pipedrive')).toContainText('Sandbox Company (sandbox)');

  await page.fill('#api_key', 'xkeysib-this-key-is-wrong');
  await page.getByRole('button', { name: 'Check and save key' }).click();
  await expect(page.getByRole('alert')).toContainText('Brevo refused this key');
  await expect(page.getByTestId('brevo-status')).toHaveCount(0);

  await page.fill('#api_key', BREVO_KEY);
  await page.getByRole('button', { name: 'Check and save key' }).click();
  await expect(page.getByTestId('brevo-status')).toContainText('Connected');
  await expect(page.getByTestId('brevo-last4')).toHaveText('…dbox');
  await expect(page.locator('body')).not.toContainText(BREVO_KEY);

  // The dashboard tells the same.
  await open(page, base);
  await expect(page.getByTestId('dashboard-pipedrive')).toHaveText('Connected: Sandbox Company (sandbox)');
  await expect(page.getByTestId('dashboard-brevo')).toContainText('Connected');
  await open(page, `${base}/connections`);

  // Denying on the consent page leaves Pipedrive as it was and says so.
  await page.getByRole('button', { name: 'Disconnect' }).first().click();
  await expect(page.getByTestId('pipedrive-status')).toHaveCount(0);
  await page.getByTestId('connect-pipedrive').click();
  await page.getByRole('button', { name: 'Cancel' }).click();
  await expect(page).toHaveURL(/\/connections\?pipedrive=denied$/);
  await expect(page.getByRole('alert')).toContainText('Pipedrive was not connected');
  expectNoPageErrors(page);
});
