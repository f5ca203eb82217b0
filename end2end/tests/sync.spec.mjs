// A whole first sync as a person does it: connect both sides, import the connector spec's YAML,
// fix what the check reports against the real accounts, sync, watch the progress bar, read the
// run and its record errors, retry one. The sandbox runs on :4110 (Pipedrive) and :4120 (Brevo).
import { test, expect } from '@playwright/test';
import { open, signUp, uniqueEmail, expectNoPageErrors, connectPipedriveToken, connectBrevo } from './helpers.mjs';

const BREVO = 'http://127.0.0.1:4120';

test('import the seed, fix it, sync, watch progress, see record errors and retry one', async ({ page, request }) => {
  test.setTimeout(180_000);
  // This test's own Brevo account, with the lists a marketer would have made.
  const key = `xkeysib-e2e-${Date.now()}-${Math.floor(Math.random() * 1e6)}`;
  expect((await request.post(`${BREVO}/_sandbox/keys`, { data: { api_key: key } })).ok()).toBeTruthy();
  const lists = {};
  for (const name of ['All contacts', 'Qualified leads', 'Customers', 'Churned', 'Lost deals']) {
    const res = await request.post(`${BREVO}/v3/contacts/lists`, { headers: { 'api-key': key }, data: { name, folderId: 1 } });
    lists[name] = (await res.json()).id;
  }

  await signUp(page, { company: 'Syncers', email: uniqueEmail('sync'), password: 'correct horse battery' });
  await expect(page).toHaveURL(/\/t\/[0-9a-f-]{36}$/);
  const base = new URL(page.url()).pathname;

  await open(page, `${base}/connections`);
  await connectPipedriveToken(page);
  await connectBrevo(page, key);
  // No run yet; and none can start on the schedule before a mapping is saved.
  await open(page, base);
  await expect(page.getByTestId('no-sync')).toBeVisible();

  // The seed names lists 60–64, which this Brevo account does not have: the check says so.
  await open(page, `${base}/mappings`);
  const yaml = page.locator('#yaml');
  const seed = await yaml.inputValue();
  await page.getByRole('button', { name: 'Check and save', exact: true }).click();
  await expect(page.getByRole('alert')).toContainText('Brevo has no list 60');

  const fixed = seed
    .replace('all_contacts: 60', `all_contacts: ${lists['All contacts']}`)
    .replace('qualified_leads: 61', `qualified_leads: ${lists['Qualified leads']}`)
    .replace('customers: 62', `customers: ${lists['Customers']}`)
    .replace('churned: 63', `churned: ${lists['Churned']}`)
    .replace(/  1: 61\n  2: 61\n  3: 62\n  4: 62\n  "won": 63\n  "lost": 64/,
      `  1: ${lists['Qualified leads']}\n  2: ${lists['Qualified leads']}\n  3: ${lists['Customers']}\n  4: ${lists['Customers']}\n  "won": ${lists['Customers']}\n  "lost": ${lists['Lost deals']}`);
  await yaml.fill(fixed);
  await page.getByRole('button', { name: 'Check and save', exact: true }).click();
  await expect(page.getByRole('status')).toContainText('Saved as version 1.');
  await expect(page.getByRole('status')).toContainText('it will be created');

  // The forms show the same configuration with the real stages and lists.
  const forms = page.locator('#mapping-forms');
  await expect(forms.locator('#stage-mapping')).toContainText('Sales → Qualified');
  await expect(forms.locator('select[name=all_contacts]')).toHaveValue(String(lists['All contacts']));
  await expect(forms.locator('[data-stage="lost"] select')).toHaveValue(String(lists['Lost deals']));

  // Sync now, and the progress bar follows the run without a reload.
  // (From here the schedule may queue the first sync too: the progress bar follows whichever.)
  await open(page, base);
  await page.getByTestId('sync-now').click();
  const progress = page.getByTestId('sync-progress');
  await expect(progress).toBeVisible({ timeout: 30_000 });
  await expect(progress).toHaveAttribute('data-status', 'succeeded', { timeout: 120_000 });
  await expect(progress.getByRole('progressbar')).toHaveAttribute('aria-valuenow', '100');

  // The run in the history, its counts and its record errors.
  await open(page, `${base}/history`);
  // The schedule may have run an incremental sync since: the backfill is the oldest run.
  const row = page.locator('#runs tbody tr').filter({ hasText: 'backfill' });
  await expect(row).toHaveCount(1);
  await expect(row).toContainText('Succeeded');
  await row.getByRole('link').click();
  await expect(page.locator('#counts [data-entity="person"]')).toBeVisible();
  const errors = page.getByTestId('record-error');
  await expect(errors.first()).toBeVisible();
  const noEmail = errors.filter({ hasText: 'No valid email address' }).first();
  await expect(noEmail).toBeVisible();
  const record = await noEmail.getAttribute('data-record');

  // Retry it: a retry run reads the person again; still without an email, it is reported again.
  await noEmail.getByTestId('retry-one').click();
  await expect(page.getByRole('status').filter({ hasText: 'Retry queued' })).toBeVisible();
  await open(page, `${base}/history`);
  const retryRow = page.locator('#runs tbody tr').filter({ hasText: 'retry' });
  await expect(retryRow).toHaveCount(1, { timeout: 60_000 });
  await expect(retryRow).toContainText('Succeeded', { timeout: 60_000 });
  await retryRow.getByRole('link').click();
  await expect(page.locator(`[data-record="${record}"]`)).toContainText('No valid email address');

  // Brevo really holds the contacts, in the chosen list.
  const state = await (await request.get(`${BREVO}/_sandbox/state?api_key=${key}`)).json();
  expect(state.contacts.length).toBeGreaterThan(20);
  expect(state.contacts.every((c) => c.listIds.includes(lists['All contacts']))).toBeTruthy();
  expectNoPageErrors(page);
});
