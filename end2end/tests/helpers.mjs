// Shared steps of the browser tests.
import { expect } from '@playwright/test';

export function uniqueEmail(prefix) {
  return `${prefix}-${Date.now()}-${Math.floor(Math.random() * 1e6)}@example.com`;
}

// Opens `path` and waits until the wasm has hydrated the page; collects page errors.
export async function open(page, path) {
  const errors = page.__errors ?? (page.__errors = []);
  if (!page.__listening) {
    page.on('pageerror', (e) => errors.push(e.message));
    // A Rust panic in the browser prints its message on the console before the wasm traps.
    page.on('console', (m) => { if (m.type() === 'error' && /panicked|hydration error/.test(m.text())) errors.push(m.text()); });
    page.__listening = true;
  }
  const response = await page.goto(path);
  await page.locator('html[data-hydrated="true"]').waitFor();
  return response;
}

export async function signUp(page, { company, email, password }) {
  await open(page, '/signup');
  await page.fill('#company', company);
  await page.fill('#email', email);
  await page.fill('#password', password);
  await page.click('button[type=submit]');
}

export async function logIn(page, { email, password }) {
  await open(page, '/login');
  await page.fill('#email', email);
  await page.fill('#password', password);
  await page.click('button[type=submit]');
}

export async function logOut(page) {
  await page.getByRole('button', { name: /▾/ }).click();
  await page.getByRole('menuitem', { name: 'Log out' }).click();
  await expect(page).toHaveURL(/\/login$/);
}

export function expectNoPageErrors(page) {
  expect(page.__errors ?? []).toEqual([]);
}

// Connects Pipedrive on the sandbox's consent page, from the Connections page.
export async function connectPipedriveOAuth(page) {
  await page.getByTestId('connect-pipedrive').click();
  await expect(page).toHaveURL(/127\.0\.0\.1:4110\/oauth\/authorize\?/);
  await page.getByRole('button', { name: 'Allow and install' }).click();
  await expect(page).toHaveURL(/\/connections\?pipedrive=connected$/);
  await page.locator('html[data-hydrated="true"]').waitFor();
  await expect(page.getByTestId('pipedrive-status')).toContainText('Connected');
}

// Connects Pipedrive with the sandbox's API token, from the Connections page.
export async function connectPipedriveToken(page) {
  await page.getByText('Or use an API token').click();
  await page.fill('#api_token', 'sandbox-pipedrive-api-token-0000000000');
  await page.fill('#company_domain', 'sandbox');
  await page.getByRole('button', { name: 'Connect with the token' }).click();
  await expect(page.getByTestId('pipedrive-status')).toContainText('Connected');
}

// Saves a Brevo key, from the Connections page.
export async function connectBrevo(page, key) {
  await page.fill('#api_key', key);
  await page.getByRole('button', { name: 'Check and save key' }).click();
  await expect(page.getByTestId('brevo-status')).toContainText('Connected');
}

// A Brevo account of the sandbox's of its own, as a new company has it: one folder, one list.
export async function freshBrevoKey(request, prefix) {
  const key = `xkeysib-${prefix}-${Date.now()}-${Math.floor(Math.random() * 1e6)}`;
  expect((await request.post('http://127.0.0.1:4120/_sandbox/keys', { data: { api_key: key } })).ok()).toBeTruthy();
  return key;
}
