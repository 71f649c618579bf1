import { test, expect } from '@playwright/test';

test.describe('book list', () => {
  test('lists all eight books with authors and prices', async ({ page }) => {
    await page.goto('/books');
    const items = page.getByTestId('book-list').getByRole('listitem');
    await expect(items).toHaveCount(8);
    await expect(page.getByTestId('result-count')).toHaveText('8 books');
    const orchard = items.filter({ hasText: 'The Silent Orchard' });
    await expect(orchard.locator('.author')).toHaveText('Mara Ellison');
    await expect(orchard.locator('.price')).toHaveText('$14.99');
  });

  test('searching by author narrows the list', async ({ page }) => {
    await page.goto('/books');
    await page.getByRole('searchbox', { name: 'Search' }).fill('haddad');
    await page.getByRole('button', { name: 'Search' }).click();
    await expect(page).toHaveURL(/\/books\?q=haddad/);
    await expect(page.getByTestId('result-count')).toHaveText('1 book');
    await expect(page.getByTestId('book-list').getByRole('link')).toHaveText(['Bread and Salt']);
  });

  test('filtering by genre shows only that genre', async ({ page }) => {
    await page.goto('/books');
    await page.getByLabel('Genre').selectOption('fantasy');
    await page.getByRole('button', { name: 'Search' }).click();
    const items = page.getByTestId('book-list').getByRole('listitem');
    await expect(items).toHaveCount(2);
    for (const genre of await items.evaluateAll((els) => els.map((el) => el.getAttribute('data-genre')))) {
      expect(genre).toBe('fantasy');
    }
    await expect(page.getByLabel('Genre')).toHaveValue('fantasy');
  });

  test('a search with no match says so', async ({ page }) => {
    await page.goto('/books?q=dragons+of+mars');
    await expect(page.getByTestId('empty')).toHaveText('No books match your search.');
    await expect(page.getByTestId('result-count')).toHaveText('0 books');
    await expect(page.getByTestId('book-list')).toHaveCount(0);
  });
});
