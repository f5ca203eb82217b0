// The first run of a newcomer, through the forms only (the YAML is never touched): sign up, the
// dashboard's checklist, Pipedrive's consent page, a Brevo key, the mapping forms with the
// suggested lists, a list made from a stage row, one attribute and one stage changed, save, the
// first sync, and Brevo holding the contacts in the chosen lists. The sandbox runs on :4110
// (Pipedrive) and :4120 (Brevo).
import { test, expect } from '@playwright/test';
import { open, signUp, uniqueEmail, expectNoPageErrors, connectPipedriveOAuth, connectPipedriveToken, connectBrevo, freshBrevoKey } from './helpers.mjs';

const BREVO = 'http://127.0.0.1:4120';

async function brevoState(request, key) {
  return (await request.get(`${BREVO}/_sandbox/state?api_key=${key}`)).json();
}

// An ISO time such as 2026-12-08T00:14:33.564546Z must never be shown as text.
async function expectNoRawTimes(page) {
  expect(await page.locator('main').innerText()).not.toMatch(/\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/);
}

test('a newcomer goes from sign-up to contacts in Brevo with the forms alone', async ({ page, request }) => {
  test.setTimeout(240_000);
  const key = await freshBrevoKey(request, 'first-run');

  await signUp(page, { company: 'Newcomers', email: uniqueEmail('first'), password: 'correct horse battery' });
  await expect(page).toHaveURL(/\/t\/[0-9a-f-]{36}$/);
  const base = new URL(page.url()).pathname;
  await page.locator('html[data-hydrated="true"]').waitFor();

  // The checklist leads: four steps, none done.
  const checklist = page.getByTestId('checklist');
  await expect(checklist.locator('li')).toHaveCount(4);
  await expect(checklist.locator('[data-state="done"]')).toHaveCount(0);
  await checklist.getByRole('link', { name: 'Connect Pipedrive' }).click();
  await expect(page).toHaveURL(/\/connections$/);
  await page.locator('html[data-hydrated="true"]').waitFor();

  // Pipedrive through its consent page; Brevo with a key.
  await connectPipedriveOAuth(page);
  await connectBrevo(page, key);
  await expectNoRawTimes(page);
  await expectNoRawTimes(page);

  await open(page, base);
  await expect(checklist.locator('[data-step="pipedrive"]')).toHaveAttribute('data-state', 'done');
  await expect(checklist.locator('[data-step="brevo"]')).toHaveAttribute('data-state', 'done');
  await expect(checklist.locator('[data-step="mapping"]')).toHaveAttribute('data-state', 'todo');
  await checklist.getByRole('link', { name: 'Save a mapping' }).click();
  await expect(page).toHaveURL(/\/mappings$/);
  await page.locator('html[data-hydrated="true"]').waitFor();

  // A first mapping from the accounts: no list chosen anywhere, the email row fixed.
  const forms = page.locator('#mapping-forms');
  await expect(forms.getByTestId('forms-version')).toContainText('No mapping is saved yet');
  await expect(forms.getByTestId('key-row')).toContainText('Email');
  for (const name of ['all_contacts', 'qualified_leads', 'customers', 'churned']) {
    await expect(forms.locator(`select[name=${name}]`)).toHaveValue('');
  }
  const stageSelects = forms.locator('#stage-mapping select');
  const stages = await stageSelects.count();
  expect(stages).toBeGreaterThan(3);
  for (let i = 0; i < stages; i++) await expect(stageSelects.nth(i)).toHaveValue('');

  // "Use suggested lists": four lists in Brevo, every select filled.
  await forms.getByTestId('suggest-lists').click();
  await expect(forms.getByTestId('suggest-outcome')).toContainText('Lists ready in Brevo (4 made, 0 found)');
  let state = await brevoState(request, key);
  const listId = (name) => state.lists.find((l) => l.name === name)?.id;
  const customers = listId('Pipedrive — Customers');
  const all = listId('Pipedrive — All contacts');
  const qualified = listId('Pipedrive — Qualified leads');
  expect(customers && all && qualified).toBeTruthy();
  const folder = state.folders.find((f) => f.name === 'Pipedrive');
  expect(state.lists.filter((l) => l.folderId === folder.id)).toHaveLength(4);
  await expect(forms.locator('select[name=all_contacts]')).toHaveValue(String(all));
  await expect(forms.locator('select[name=customers]')).toHaveValue(String(customers));
  await expect(forms.locator('[data-stage="won"] select')).toHaveValue(String(customers));
  await expect(stageSelects.nth(0)).toHaveValue(String(qualified));

  // The first stage gets a list made from its row; the second is left at none.
  const firstStage = forms.locator('#stage-mapping tbody tr').nth(0);
  await firstStage.getByRole('button', { name: 'Create a list in Brevo' }).click();
  const nameInput = firstStage.getByRole('textbox');
  await expect(nameInput).toHaveValue(/^Pipedrive — /);
  await nameInput.fill('Pipedrive — Demo booked');
  await firstStage.getByRole('button', { name: 'Create', exact: true }).click();
  await expect(firstStage.getByRole('status')).toContainText('was made in Brevo and is selected');
  state = await brevoState(request, key);
  const demo = listId('Pipedrive — Demo booked');
  expect(demo).toBeTruthy();
  await expect(stageSelects.nth(0)).toHaveValue(String(demo));
  await stageSelects.nth(1).selectOption('');

  // One attribute changed: the Name row goes to a new attribute.
  const nameRow = forms.getByTestId('person-row').nth(0);
  await expect(nameRow.locator('select')).toHaveValue('name');
  const attribute = nameRow.getByRole('combobox', { name: 'Brevo attribute' });
  await attribute.fill('contact_name');
  await attribute.blur();
  await expect(attribute).toHaveValue('CONTACT_NAME');

  await forms.getByTestId('save-forms').click();
  await expect(forms.getByRole('status').filter({ hasText: 'Saved as version 1.' })).toBeVisible();
  await expect(forms.getByTestId('forms-version')).toContainText('Version 1 is in force');
  const version = page.locator('#versions tbody tr').first();
  await expect(version.locator('time')).toHaveText(/just now|min ago/);
  await expect(version.locator('time')).toHaveAttribute('title', /\d/);
  await expectNoRawTimes(page);

  // Reloaded, the forms show what was saved.
  await open(page, `${base}/mappings`);
  await expect(forms.locator('select[name=all_contacts]')).toHaveValue(String(all));
  await expect(stageSelects.nth(0)).toHaveValue(String(demo));
  await expect(stageSelects.nth(1)).toHaveValue('');
  await expect(forms.locator('[data-stage="lost"] select')).toHaveValue(String(listId('Pipedrive — Churned')));
  await expect(forms.getByTestId('person-row').nth(0).getByRole('combobox', { name: 'Brevo attribute' })).toHaveValue('CONTACT_NAME');
  await expect(page.locator('#yaml')).toHaveValue(/name: CONTACT_NAME/);

  // The first sync, from the dashboard.
  await open(page, base);
  await expect(checklist.locator('[data-step="mapping"]')).toHaveAttribute('data-state', 'done');
  await page.getByTestId('sync-now').click();
  const progress = page.getByTestId('sync-progress');
  await expect(progress).toHaveAttribute('data-status', 'succeeded', { timeout: 150_000 });
  await expect(progress.getByRole('progressbar')).toHaveAttribute('aria-valuenow', '100');
  await expect(checklist).toHaveCount(0, { timeout: 15_000 });
  await expectNoRawTimes(page);

  // Brevo holds the contacts, in the chosen lists, with the chosen attribute.
  state = await brevoState(request, key);
  expect(state.contacts.length).toBeGreaterThan(20);
  expect(state.contacts.every((c) => c.listIds.includes(all))).toBeTruthy();
  expect(state.contacts.some((c) => c.listIds.includes(customers))).toBeTruthy();
  expect(state.contacts.some((c) => c.listIds.includes(demo))).toBeTruthy();
  expect(state.contacts.some((c) => typeof c.attributes.CONTACT_NAME === 'string')).toBeTruthy();
  expectNoPageErrors(page);
});

test('mistakes in the forms are shown beside their rows and nothing typed is lost', async ({ page, request }) => {
  const key = await freshBrevoKey(request, 'form-mistakes');
  await signUp(page, { company: 'Typos', email: uniqueEmail('typo'), password: 'correct horse battery' });
  await expect(page).toHaveURL(/\/t\/[0-9a-f-]{36}$/);
  const base = new URL(page.url()).pathname;
  await open(page, `${base}/connections`);
  await connectPipedriveToken(page);
  await connectBrevo(page, key);

  await open(page, `${base}/mappings`);
  const forms = page.locator('#mapping-forms');
  const rows = forms.getByTestId('person-row');
  const attr = (i) => rows.nth(i).getByRole('combobox', { name: 'Brevo attribute' });
  // Rows 1 and 2 are first and last name (the seed's order).
  await expect(rows.nth(1).locator('select')).toHaveValue('first_name');
  await expect(rows.nth(2).locator('select')).toHaveValue('last_name');
  await attr(1).fill('first name');
  await attr(2).fill('FULLNAME');

  // A list made for customers, then deleted in Brevo before the save.
  const customersPicker = forms.locator('.list-picker').filter({ has: page.locator('select[name=customers]') });
  await customersPicker.getByRole('button', { name: 'Create a list in Brevo' }).click();
  await expect(customersPicker.getByRole('textbox')).toHaveValue('Pipedrive — Customers');
  await customersPicker.getByRole('button', { name: 'Create', exact: true }).click();
  await expect(customersPicker.getByRole('status')).toContainText('is selected');
  const made = await forms.locator('select[name=customers]').inputValue();
  expect(made).not.toBe('');
  expect((await request.delete(`${BREVO}/v3/contacts/lists/${made}`, { headers: { 'api-key': key } })).ok()).toBeTruthy();

  await forms.getByTestId('save-forms').click();
  await expect(forms.getByRole('alert').filter({ hasText: 'Not saved' })).toBeVisible();
  await expect(rows.nth(1).getByTestId('row-error')).toContainText('not a Brevo attribute name');
  await expect(rows.nth(2).getByTestId('row-error')).toContainText('FULLNAME is already the target of name');
  await expect(customersPicker.getByTestId('row-error')).toHaveText(`Brevo has no list ${made}.`);
  // Nothing typed is lost, and nothing was saved.
  await expect(attr(1)).toHaveValue('FIRST NAME');
  await expect(attr(2)).toHaveValue('FULLNAME');
  await expect(forms.locator('select[name=customers]')).toHaveValue(made);
  await expect(page.locator('#versions')).toHaveCount(0);

  // Fixed where they are shown, the forms save.
  await attr(1).fill('FIRSTNAME');
  await attr(2).fill('LASTNAME');
  await forms.locator('select[name=customers]').selectOption('');
  await forms.getByTestId('save-forms').click();
  await expect(forms.getByRole('status').filter({ hasText: 'Saved as version 1.' })).toBeVisible();
  await expect(forms.getByTestId('row-error')).toHaveCount(0);
  await open(page, `${base}/mappings`);
  await expect(forms.locator('select[name=customers]')).toHaveValue('');
  await expect(attr(1)).toHaveValue('FIRSTNAME');
  expectNoPageErrors(page);
});
