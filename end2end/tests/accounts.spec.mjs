// Accounts and tenants as a person uses them, in Chromium with the wasm loaded.
import { test, expect } from '@playwright/test';
import { open, signUp, logIn, logOut, uniqueEmail, expectNoPageErrors } from './helpers.mjs';

const PASSWORD = 'correct horse battery';

test('sign up, see the shell, log out, log in, wrong password', async ({ page }) => {
  const email = uniqueEmail('ann');
  const company = `Acme ${Date.now()}`;

  await signUp(page, { company, email, password: PASSWORD });
  await expect(page).toHaveURL(/\/t\/[0-9a-f-]{36}$/);
  await expect(page.getByTestId('tenant-name')).toHaveText(company);
  await expect(page.getByRole('heading', { name: 'Dashboard' })).toBeVisible();
  for (const item of ['Dashboard', 'Connections', 'Mappings', 'Sync history', 'Team', 'Settings']) {
    await expect(page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: item })).toBeVisible();
  }

  await logOut(page);

  await logIn(page, { email, password: PASSWORD });
  await expect(page.getByTestId('tenant-name')).toHaveText(company);
  await logOut(page);

  await logIn(page, { email, password: 'not the password' });
  await expect(page.getByRole('alert')).toHaveText('Wrong email or password.');
  await expect(page).toHaveURL(/\/login$/);
  // An unknown email gets exactly the same message.
  await logIn(page, { email: uniqueEmail('nobody'), password: PASSWORD });
  await expect(page.getByRole('alert')).toHaveText('Wrong email or password.');
  expectNoPageErrors(page);
});

test('the page is hydrated: client-side controls work', async ({ page }) => {
  await open(page, '/login');
  const password = page.locator('#password');
  await expect(password).toHaveAttribute('type', 'password');
  await page.getByRole('button', { name: 'Show' }).click();
  await expect(password).toHaveAttribute('type', 'text');
  await page.getByRole('button', { name: 'Hide' }).click();
  await expect(password).toHaveAttribute('type', 'password');

  // The user menu opens on click (a signal, not a server round trip).
  await signUp(page, { company: 'Hydra', email: uniqueEmail('hydra'), password: PASSWORD });
  const menu = page.getByRole('menu');
  await expect(menu).toBeHidden();
  await page.getByRole('button', { name: /▾/ }).click();
  await expect(menu).toBeVisible();
  expectNoPageErrors(page);
});

test('bad sign-up input gets a clear message in the form', async ({ page }) => {
  await signUp(page, { company: 'Shorty', email: uniqueEmail('short'), password: 'short' });
  // The browser's own minlength check is absent on purpose: the server's message is shown.
  await expect(page.getByRole('alert')).toHaveText('Choose a password of at least 10 characters.');

  await signUp(page, { company: 'Typo', email: 'not-an-email@nowhere', password: PASSWORD });
  await expect(page.getByRole('alert')).toContainText('is not a valid email address');

  const email = uniqueEmail('dup');
  await signUp(page, { company: 'First', email, password: PASSWORD });
  await expect(page).toHaveURL(/\/t\//);
  await logOut(page);
  await signUp(page, { company: 'Second', email, password: PASSWORD });
  await expect(page.getByRole('alert')).toHaveText('An account with this email already exists. Log in instead.');
  expectNoPageErrors(page);
});

test("a second user cannot open the first tenant's pages by URL", async ({ page }) => {
  await signUp(page, { company: 'Secret Co', email: uniqueEmail('owner'), password: PASSWORD });
  await expect(page).toHaveURL(/\/t\/[0-9a-f-]{36}$/);
  const tenantUrl = new URL(page.url()).pathname;
  await logOut(page);

  await signUp(page, { company: 'Other Co', email: uniqueEmail('other'), password: PASSWORD });
  await expect(page.getByTestId('tenant-name')).toHaveText('Other Co');

  for (const path of [tenantUrl, `${tenantUrl}/team`, `${tenantUrl}/settings`]) {
    const response = await page.goto(path);
    expect(response.status()).toBe(404);
    await expect(page.getByRole('heading', { name: 'Page not found' })).toBeVisible();
    await expect(page.locator('body')).not.toContainText('Secret Co');
  }
});

test('a signed-out visitor is sent to the log-in page', async ({ page }) => {
  await page.goto('/t/00000000-0000-0000-0000-000000000000/team');
  await expect(page).toHaveURL(/\/login$/);
});
