import { test, expect } from '@playwright/test';

test('every main navigation link leads to its page', async ({ page }) => {
  const destinations = [
    { link: 'Books', url: '/books', heading: 'Books' },
    { link: 'Recommendations', url: '/recommendations', heading: 'Recommended for you' },
    { link: 'Stock', url: '/stock', heading: 'Stock check' },
    { link: 'Reports', url: '/reports', heading: 'Sales report' },
    { link: 'Cart (0)', url: '/cart', heading: 'Your cart' },
  ];
  await page.goto('/');
  const nav = page.getByRole('navigation', { name: 'Main' });
  for (const { link, url, heading } of destinations) {
    await nav.getByRole('link', { name: link, exact: true }).click();
    await expect(page).toHaveURL(url);
    await expect(page.getByRole('heading', { level: 1 })).toHaveText(heading);
  }
});

test('list, detail and back again, by link and by history', async ({ page }) => {
  await page.goto('/books');
  await page.getByRole('link', { name: 'North of Nowhere' }).click();
  await expect(page).toHaveURL('/books/north-of-nowhere');
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('North of Nowhere');

  await page.getByRole('link', { name: 'Back to all books' }).click();
  await expect(page).toHaveURL('/books');

  await page.goBack();
  await expect(page).toHaveURL('/books/north-of-nowhere');
  await page.goForward();
  await expect(page.getByTestId('book-list').getByRole('listitem')).toHaveCount(8);
});

test('the brand link returns home from any page', async ({ page }) => {
  await page.goto('/books/bread-and-salt');
  await page.getByRole('link', { name: 'Inkwell Books', exact: true }).click();
  await expect(page).toHaveURL('/');
  await expect(page.getByRole('heading', { name: 'Staff picks' })).toBeVisible();
});
