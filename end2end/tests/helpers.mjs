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
