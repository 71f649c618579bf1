import { test, expect } from '@playwright/test';

// The recommendations page renders its list only after a client-side delay
// (1000 ms by default, ?delay=ms to change it), so these tests wait for real.

test('shows a loading message, then three picks', async ({ page }) => {
  // A delay well past page load, so the loading message is still there on a
  // busy machine when the first assertion looks.
  await page.goto('/recommendations?delay=3000');
  const status = page.getByTestId('rec-status');
  await expect(status).toHaveText('Finding books you will like…');
  await expect(page.getByTestId('recommendations')).toBeHidden();

  await expect(status).toHaveText('3 picks for you');
  await expect(page.getByTestId('recommendations').getByRole('listitem')).toHaveCount(3);
});

test('a longer delay keeps the list hidden until it is ready', async ({ page }) => {
  const started = Date.now();
  await page.goto('/recommendations?delay=2500');
  const list = page.getByTestId('recommendations');
  await expect(list).toBeHidden();
  await expect(list).toBeVisible();
  expect(Date.now() - started).toBeGreaterThanOrEqual(2_400);
  await expect(list.getByRole('link')).toHaveText([
    'The Silent Orchard',
    'A Field Guide to Clouds',
    'The Glass Cartographer',
  ]);
});

test('a recommendation opens the book page', async ({ page }) => {
  // EXAMPLE_FLAKY=1 makes this test flaky on purpose: on the first attempt it
  // waits only 300 ms for a list that is drawn 10 s after the page's script
  // runs, so it times out however slow the page load (a busy machine can
  // delay the load event by seconds); the retry asks for the default delay,
  // waits long enough and passes. Without the flag it always passes.
  const impatient = process.env.EXAMPLE_FLAKY === '1' && test.info().retry === 0;
  const waitMs = impatient ? 300 : 5_000;

  await page.goto(impatient ? '/recommendations?delay=10000' : '/recommendations');
  const link = page.getByTestId('recommendations').getByRole('link', { name: 'A Field Guide to Clouds' });
  await expect(link).toBeVisible({ timeout: waitMs });
  await link.click();
  await expect(page).toHaveURL('/books/a-field-guide-to-clouds');
  await expect(page.getByTestId('price')).toHaveText('$22.00');
});
