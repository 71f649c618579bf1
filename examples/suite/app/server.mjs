// Inkwell Books: a tiny fictional bookshop used as the target of the example
// Playwright suite. It has no dependencies besides Node itself.
//
//   PORT  port to listen on (default 4173)
//   HOST  address to bind (default 127.0.0.1)
//
// Pages:  /  /books  /books/:id  /cart  /checkout (GET form, POST result)
//         /recommendations?delay=ms  /stock?ms=  /reports?ms=  and a 404 page.
// API:    /api/health  /api/books  /api/books/:id  /api/orders  /api/orders/:id
//         /api/slow?ms=
import http from 'node:http';

const PORT = Number.parseInt(process.env.PORT ?? '4173', 10);
const HOST = process.env.HOST ?? '127.0.0.1';
const MAX_SLOW_MS = 10_000;
const MAX_BODY_BYTES = 64 * 1024;
const startedAt = Date.now();

const BOOKS = [
  { id: 'the-silent-orchard', title: 'The Silent Orchard', author: 'Mara Ellison', genre: 'fiction', priceCents: 1499, stock: 12, featured: true },
  { id: 'tides-of-copper', title: 'Tides of Copper', author: 'Joren Vale', genre: 'fantasy', priceCents: 1850, stock: 4, featured: false },
  { id: 'a-field-guide-to-clouds', title: 'A Field Guide to Clouds', author: 'Priya Nandakumar', genre: 'science', priceCents: 2200, stock: 7, featured: true },
  { id: 'the-lantern-keeper', title: 'The Lantern Keeper', author: 'Eliza Marsh', genre: 'mystery', priceCents: 1125, stock: 0, featured: false },
  { id: 'small-engines-of-thought', title: 'Small Engines of Thought', author: 'Tomasz Rybak', genre: 'science', priceCents: 2740, stock: 3, featured: false },
  { id: 'north-of-nowhere', title: 'North of Nowhere', author: 'Hal Bryce', genre: 'travel', priceCents: 1600, stock: 9, featured: false },
  { id: 'the-glass-cartographer', title: 'The Glass Cartographer', author: 'Ines Albarran', genre: 'fantasy', priceCents: 1999, stock: 5, featured: true },
  { id: 'bread-and-salt', title: 'Bread and Salt', author: 'Noor Haddad', genre: 'cooking', priceCents: 2400, stock: 6, featured: false },
];
const GENRES = [...new Set(BOOKS.map((b) => b.genre))].sort();
const MAX_QUANTITY = 5;

/** Orders live in memory for the life of the process. */
const orders = new Map();
let nextOrderId = 1001;

/** Timers of /api/slow requests still waiting, cleared on shutdown. */
const pendingTimers = new Set();

// ---------------------------------------------------------------- helpers

function escapeHtml(value) {
  return String(value)
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&#39;');
}

function money(cents) {
  return `$${(cents / 100).toFixed(2)}`;
}

function findBook(id) {
  return BOOKS.find((b) => b.id === id);
}

function filterBooks({ q = '', genre = '', featured = false } = {}) {
  const needle = q.trim().toLowerCase();
  return BOOKS.filter((b) => {
    if (genre && b.genre !== genre) return false;
    if (featured && !b.featured) return false;
    if (needle && !`${b.title} ${b.author}`.toLowerCase().includes(needle)) return false;
    return true;
  });
}

function sendJson(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}

function sendHtml(res, status, html) {
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'content-length': Buffer.byteLength(html),
    'cache-control': 'no-store',
  });
  res.end(html);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(Object.assign(new Error('Request body too large'), { status: 413 }));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/**
 * Validates an order from either the HTML form or the JSON API.
 * Returns { errors: [{field, message}], order }.
 */
function validateOrder(input) {
  const errors = [];
  const name = typeof input.name === 'string' ? input.name.trim() : '';
  const email = typeof input.email === 'string' ? input.email.trim() : '';
  const bookId = typeof input.bookId === 'string' ? input.bookId : '';
  const quantity = Number(input.quantity);
  const book = findBook(bookId);

  if (!name) errors.push({ field: 'name', message: 'Name is required' });
  if (!/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(email)) {
    errors.push({ field: 'email', message: 'Email must be a valid address' });
  }
  if (!book) {
    errors.push({ field: 'bookId', message: 'Choose a book' });
  } else if (book.stock === 0) {
    errors.push({ field: 'bookId', message: `Sorry, ${book.title} is out of stock` });
  }
  if (!Number.isInteger(quantity) || quantity < 1 || quantity > MAX_QUANTITY) {
    errors.push({ field: 'quantity', message: `Quantity must be between 1 and ${MAX_QUANTITY}` });
  } else if (book && book.stock > 0 && quantity > book.stock) {
    errors.push({ field: 'quantity', message: `Only ${book.stock} left in stock` });
  }
  if (errors.length > 0) return { errors };
  return { errors, order: { name, email, bookId, quantity, book } };
}

function createOrder({ name, email, bookId, quantity, book }) {
  const order = {
    id: nextOrderId++,
    name,
    email,
    bookId,
    title: book.title,
    genre: book.genre,
    quantity,
    totalCents: book.priceCents * quantity,
    status: 'confirmed',
    createdAt: new Date().toISOString(),
  };
  orders.set(order.id, order);
  return order;
}

function publicOrder(order) {
  return {
    id: order.id,
    bookId: order.bookId,
    title: order.title,
    quantity: order.quantity,
    totalCents: order.totalCents,
    total: money(order.totalCents),
    status: order.status,
    createdAt: order.createdAt,
  };
}

// ---------------------------------------------------------------- layout

function layout(title, body, { script = '' } = {}) {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)} · Inkwell Books</title>
<link rel="stylesheet" href="/static/style.css">
</head>
<body>
<header>
  <a class="brand" href="/">Inkwell Books</a>
  <nav aria-label="Main">
    <a href="/books">Books</a>
    <a href="/recommendations">Recommendations</a>
    <a href="/stock">Stock</a>
    <a href="/reports">Reports</a>
    <a href="/cart" id="cart-link">Cart (<span data-testid="cart-count">0</span>)</a>
  </nav>
</header>
<main>
${body}
</main>
<footer>Inkwell Books is a demo shop. No real books are sold.</footer>
<script src="/static/app.js"></script>
${script ? `<script>${script}</script>` : ''}
</body>
</html>`;
}

const STYLE = `
body { font-family: system-ui, sans-serif; margin: 0; color: #222; }
header { display: flex; gap: 2rem; align-items: center; padding: 0.8rem 1.5rem; background: #2d3a4a; }
header a { color: #f3f0e8; text-decoration: none; }
header nav { display: flex; gap: 1rem; }
.brand { font-weight: bold; font-size: 1.2rem; }
main { padding: 1rem 1.5rem; max-width: 48rem; }
footer { padding: 1rem 1.5rem; color: #777; font-size: 0.85rem; }
.errors { color: #a00; }
.price { font-weight: bold; }
table { border-collapse: collapse; }
td, th { border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: left; }
label { display: block; margin: 0.5rem 0; }
`;

// Shared client script: keeps the cart in localStorage and the badge in sync.
const APP_JS = `
(function () {
  var KEY = 'inkwell-cart';
  function read() {
    try { return JSON.parse(localStorage.getItem(KEY) || '{}'); } catch (e) { return {}; }
  }
  function write(cart) {
    localStorage.setItem(KEY, JSON.stringify(cart));
    refreshBadge();
  }
  function count(cart) {
    return Object.keys(cart).reduce(function (n, id) { return n + cart[id]; }, 0);
  }
  function refreshBadge() {
    var el = document.querySelector('[data-testid="cart-count"]');
    if (el) el.textContent = String(count(read()));
  }
  window.inkwellCart = {
    read: read,
    add: function (id) { var c = read(); c[id] = (c[id] || 0) + 1; write(c); },
    remove: function (id) { var c = read(); delete c[id]; write(c); },
    clear: function () { write({}); },
    count: function () { return count(read()); }
  };
  document.addEventListener('DOMContentLoaded', refreshBadge);
  refreshBadge();
})();
`;

// ---------------------------------------------------------------- pages

function homePage() {
  const featured = BOOKS.filter((b) => b.featured)
    .map((b) => `<li><a href="/books/${b.id}">${escapeHtml(b.title)}</a></li>`)
    .join('\n');
  return layout('Home', `
<h1>Inkwell Books</h1>
<p class="tagline">Independent books, carefully chosen.</p>
<p><a href="/books" class="cta">Browse all ${BOOKS.length} books</a></p>
<section aria-labelledby="featured-heading">
  <h2 id="featured-heading">Staff picks</h2>
  <ul data-testid="featured">${featured}</ul>
</section>`);
}

function booksPage({ q, genre }) {
  const list = filterBooks({ q, genre });
  const options = ['<option value="">All genres</option>']
    .concat(GENRES.map((g) => `<option value="${g}"${g === genre ? ' selected' : ''}>${g}</option>`))
    .join('');
  const items = list
    .map(
      (b) => `<li data-genre="${b.genre}"><a href="/books/${b.id}">${escapeHtml(b.title)}</a>
  by <span class="author">${escapeHtml(b.author)}</span> · <span class="price">${money(b.priceCents)}</span></li>`,
    )
    .join('\n');
  const result = list.length
    ? `<ul data-testid="book-list">${items}</ul>`
    : `<p data-testid="empty">No books match your search.</p>`;
  return layout('Books', `
<h1>Books</h1>
<form method="get" action="/books" role="search">
  <label>Search <input type="search" name="q" value="${escapeHtml(q)}"></label>
  <label>Genre <select name="genre">${options}</select></label>
  <button type="submit">Search</button>
</form>
<p data-testid="result-count">${list.length} ${list.length === 1 ? 'book' : 'books'}</p>
${result}`);
}

function bookPage(book) {
  const stock = book.stock > 0 ? `In stock (${book.stock})` : 'Out of stock';
  return layout(book.title, `
<article data-book-id="${book.id}">
  <h1>${escapeHtml(book.title)}</h1>
  <p>by <span class="author">${escapeHtml(book.author)}</span></p>
  <p>Genre: <span data-testid="genre">${book.genre}</span></p>
  <p class="price" data-testid="price">${money(book.priceCents)}</p>
  <p data-testid="stock">${stock}</p>
  <button type="button" id="add-to-cart"${book.stock === 0 ? ' disabled' : ''}>Add to cart</button>
  <p role="status" data-testid="added" hidden>Added to your cart</p>
</article>
<p><a href="/books">Back to all books</a></p>`, {
    script: `document.getElementById('add-to-cart').addEventListener('click', function () {
  window.inkwellCart.add(${JSON.stringify(book.id)});
  document.querySelector('[data-testid="added"]').hidden = false;
});`,
  });
}

function cartPage() {
  const catalogue = Object.fromEntries(BOOKS.map((b) => [b.id, { title: b.title, priceCents: b.priceCents }]));
  return layout('Cart', `
<h1>Your cart</h1>
<p data-testid="cart-empty" hidden>Your cart is empty.</p>
<table data-testid="cart-table" hidden>
  <thead><tr><th>Book</th><th>Qty</th><th>Subtotal</th><th></th></tr></thead>
  <tbody></tbody>
</table>
<p>Total: <span data-testid="cart-total">$0.00</span></p>
<p><a href="/checkout" id="checkout-link">Go to checkout</a></p>`, {
    script: `var CATALOGUE = ${JSON.stringify(catalogue)};
function fmt(c) { return '$' + (c / 100).toFixed(2); }
function render() {
  var cart = window.inkwellCart.read();
  var ids = Object.keys(cart).filter(function (id) { return CATALOGUE[id]; });
  var body = document.querySelector('[data-testid="cart-table"] tbody');
  body.innerHTML = '';
  var total = 0;
  ids.forEach(function (id) {
    var sub = CATALOGUE[id].priceCents * cart[id];
    total += sub;
    var tr = document.createElement('tr');
    tr.setAttribute('data-book-id', id);
    [CATALOGUE[id].title, String(cart[id]), fmt(sub)].forEach(function (t) {
      var td = document.createElement('td'); td.textContent = t; tr.appendChild(td);
    });
    var td = document.createElement('td');
    var btn = document.createElement('button');
    btn.textContent = 'Remove';
    btn.setAttribute('aria-label', 'Remove ' + CATALOGUE[id].title);
    btn.addEventListener('click', function () { window.inkwellCart.remove(id); render(); });
    td.appendChild(btn); tr.appendChild(td); body.appendChild(tr);
  });
  document.querySelector('[data-testid="cart-empty"]').hidden = ids.length > 0;
  document.querySelector('[data-testid="cart-table"]').hidden = ids.length === 0;
  document.querySelector('[data-testid="cart-total"]').textContent = fmt(total);
  var first = ids[0];
  document.getElementById('checkout-link').href = first
    ? '/checkout?book=' + encodeURIComponent(first) + '&qty=' + cart[first]
    : '/checkout';
}
render();`,
  });
}

function checkoutPage({ values = {}, errors = [] } = {}) {
  const bookId = values.bookId ?? '';
  const options = ['<option value="">Choose a book</option>']
    .concat(
      BOOKS.map(
        (b) =>
          `<option value="${b.id}"${b.id === bookId ? ' selected' : ''}>${escapeHtml(b.title)} (${money(b.priceCents)})</option>`,
      ),
    )
    .join('');
  const errorList = errors.length
    ? `<ul class="errors" role="alert">${errors.map((e) => `<li data-field="${e.field}">${escapeHtml(e.message)}</li>`).join('')}</ul>`
    : '';
  return layout('Checkout', `
<h1>Checkout</h1>
${errorList}
<form method="post" action="/checkout" novalidate>
  <label>Name <input name="name" autocomplete="name" value="${escapeHtml(values.name ?? '')}"></label>
  <label>Email <input name="email" type="email" autocomplete="email" value="${escapeHtml(values.email ?? '')}"></label>
  <label>Book <select name="bookId">${options}</select></label>
  <label>Quantity <input name="quantity" type="number" min="1" max="${MAX_QUANTITY}" value="${escapeHtml(values.quantity ?? '1')}"></label>
  <button type="submit">Place order</button>
</form>`);
}

function confirmationPage(order) {
  return layout('Order confirmed', `
<h1>Thank you, ${escapeHtml(order.name)}!</h1>
<p data-testid="order-number">Order #${order.id}</p>
<p data-testid="order-summary">${order.quantity} × ${escapeHtml(order.title)}</p>
<p>Total: <span class="price" data-testid="order-total">${money(order.totalCents)}</span></p>
<p>A confirmation was sent to <span data-testid="order-email">${escapeHtml(order.email)}</span>.</p>
<p><a href="/books">Keep browsing</a></p>`);
}

function recommendationsPage(delayMs) {
  return layout('Recommendations', `
<h1>Recommended for you</h1>
<p role="status" data-testid="rec-status">Finding books you will like…</p>
<ul data-testid="recommendations" hidden></ul>`, {
    script: `setTimeout(function () {
  fetch('/api/books?featured=1').then(function (r) { return r.json(); }).then(function (data) {
    var ul = document.querySelector('[data-testid="recommendations"]');
    data.books.forEach(function (b) {
      var li = document.createElement('li');
      var a = document.createElement('a');
      a.href = '/books/' + b.id; a.textContent = b.title;
      li.appendChild(a); ul.appendChild(li);
    });
    ul.hidden = false;
    document.querySelector('[data-testid="rec-status"]').textContent = data.count + ' picks for you';
  });
}, ${delayMs});`,
  });
}

function stockPage(ms) {
  return layout('Stock', `
<h1>Stock check</h1>
<p>Asks the warehouse for current stock levels. The warehouse is slow.</p>
<button type="button" id="check">Check stock</button>
<p role="status" data-testid="stock-status">Not checked yet</p>
<table data-testid="stock-table" hidden>
  <thead><tr><th>Book</th><th>In stock</th></tr></thead>
  <tbody></tbody>
</table>`, {
    script: `document.getElementById('check').addEventListener('click', function () {
  var btn = this;
  var status = document.querySelector('[data-testid="stock-status"]');
  btn.disabled = true;
  status.textContent = 'Checking the warehouse…';
  var started = Date.now();
  fetch('/api/slow?ms=${ms}&task=stock')
    .then(function () { return fetch('/api/books'); })
    .then(function (r) { return r.json(); })
    .then(function (data) {
      var body = document.querySelector('[data-testid="stock-table"] tbody');
      body.innerHTML = '';
      data.books.forEach(function (b) {
        var tr = document.createElement('tr');
        tr.setAttribute('data-book-id', b.id);
        var t = document.createElement('td'); t.textContent = b.title;
        var s = document.createElement('td'); s.textContent = b.stock === 0 ? 'Sold out' : String(b.stock);
        tr.appendChild(t); tr.appendChild(s); body.appendChild(tr);
      });
      document.querySelector('[data-testid="stock-table"]').hidden = false;
      status.textContent = 'Checked ' + data.count + ' titles in ' + (Date.now() - started) + ' ms';
      btn.disabled = false;
    });
});`,
  });
}

function reportsPage(ms) {
  return layout('Reports', `
<h1>Sales report</h1>
<button type="button" id="generate">Generate report</button>
<p role="status" data-testid="report-status">No report yet</p>
<table data-testid="report-table" hidden>
  <thead><tr><th>Genre</th><th>Orders</th><th>Revenue</th></tr></thead>
  <tbody></tbody>
</table>`, {
    script: `document.getElementById('generate').addEventListener('click', function () {
  var btn = this;
  var status = document.querySelector('[data-testid="report-status"]');
  btn.disabled = true;
  status.textContent = 'Generating report…';
  fetch('/api/slow?ms=${ms}&task=report')
    .then(function () { return fetch('/api/report'); })
    .then(function (r) { return r.json(); })
    .then(function (report) {
      var body = document.querySelector('[data-testid="report-table"] tbody');
      body.innerHTML = '';
      report.rows.forEach(function (row) {
        var tr = document.createElement('tr');
        tr.setAttribute('data-genre', row.genre);
        [row.genre, String(row.orders), row.revenue].forEach(function (t) {
          var td = document.createElement('td'); td.textContent = t; tr.appendChild(td);
        });
        body.appendChild(tr);
      });
      document.querySelector('[data-testid="report-table"]').hidden = false;
      status.textContent = 'Report ready: ' + report.totalOrders + ' orders';
      btn.disabled = false;
    });
});`,
  });
}

function notFoundPage(path) {
  return layout('Page not found', `
<h1>Page not found</h1>
<p>We could not find <code data-testid="missing-path">${escapeHtml(path)}</code>.</p>
<p><a href="/">Back to the shop</a></p>`);
}

// ---------------------------------------------------------------- API

function salesReport() {
  const rows = GENRES.map((genre) => {
    const mine = [...orders.values()].filter((o) => o.genre === genre);
    const cents = mine.reduce((sum, o) => sum + o.totalCents, 0);
    return { genre, orders: mine.length, revenueCents: cents, revenue: money(cents) };
  });
  return { totalOrders: orders.size, rows };
}

function slow(req, res, url) {
  const raw = url.searchParams.get('ms') ?? '1000';
  const ms = Number(raw);
  if (!Number.isInteger(ms) || ms < 0 || ms > MAX_SLOW_MS) {
    sendJson(res, 400, { error: `ms must be an integer between 0 and ${MAX_SLOW_MS}`, field: 'ms' });
    return;
  }
  const started = Date.now();
  const timer = setTimeout(() => {
    pendingTimers.delete(timer);
    sendJson(res, 200, {
      ok: true,
      task: url.searchParams.get('task') ?? 'generic',
      requestedMs: ms,
      waitedMs: Date.now() - started,
    });
  }, ms);
  pendingTimers.add(timer);
  // A client that gives up should not keep a timer alive.
  res.on('close', () => {
    clearTimeout(timer);
    pendingTimers.delete(timer);
  });
}

async function handleApi(req, res, url) {
  const { pathname } = url;
  const method = req.method ?? 'GET';

  if (pathname === '/api/health') {
    if (method !== 'GET') return sendJson(res, 405, { error: 'Method not allowed' });
    return sendJson(res, 200, { status: 'ok', uptimeMs: Date.now() - startedAt, books: BOOKS.length });
  }
  if (pathname === '/api/slow') {
    if (method !== 'GET') return sendJson(res, 405, { error: 'Method not allowed' });
    return slow(req, res, url);
  }
  if (pathname === '/api/books') {
    if (method !== 'GET') return sendJson(res, 405, { error: 'Method not allowed' });
    const books = filterBooks({
      q: url.searchParams.get('q') ?? '',
      genre: url.searchParams.get('genre') ?? '',
      featured: url.searchParams.get('featured') === '1',
    });
    return sendJson(res, 200, { count: books.length, books });
  }
  const bookMatch = /^\/api\/books\/([a-z0-9-]+)$/.exec(pathname);
  if (bookMatch) {
    if (method !== 'GET') return sendJson(res, 405, { error: 'Method not allowed' });
    const book = findBook(bookMatch[1]);
    if (!book) return sendJson(res, 404, { error: 'Book not found', id: bookMatch[1] });
    return sendJson(res, 200, book);
  }
  if (pathname === '/api/orders') {
    if (method !== 'POST') return sendJson(res, 405, { error: 'Method not allowed' });
    if (!(req.headers['content-type'] ?? '').includes('application/json')) {
      return sendJson(res, 415, { error: 'Send the order as application/json' });
    }
    let input;
    try {
      input = JSON.parse(await readBody(req));
    } catch (err) {
      if (err.status) return sendJson(res, err.status, { error: err.message });
      return sendJson(res, 400, { error: 'Body is not valid JSON' });
    }
    if (input === null || typeof input !== 'object' || Array.isArray(input)) {
      return sendJson(res, 400, { error: 'Body must be a JSON object' });
    }
    const { errors, order } = validateOrder(input);
    if (errors.length) return sendJson(res, 400, { error: errors[0].message, field: errors[0].field, errors });
    const created = createOrder(order);
    res.setHeader('location', `/api/orders/${created.id}`);
    return sendJson(res, 201, publicOrder(created));
  }
  const orderMatch = /^\/api\/orders\/(\d+)$/.exec(pathname);
  if (orderMatch) {
    if (method !== 'GET') return sendJson(res, 405, { error: 'Method not allowed' });
    const order = orders.get(Number(orderMatch[1]));
    if (!order) return sendJson(res, 404, { error: 'Order not found', id: Number(orderMatch[1]) });
    return sendJson(res, 200, publicOrder(order));
  }
  if (pathname === '/api/report') {
    if (method !== 'GET') return sendJson(res, 405, { error: 'Method not allowed' });
    return sendJson(res, 200, salesReport());
  }
  return sendJson(res, 404, { error: 'Not found', path: pathname });
}

// ---------------------------------------------------------------- routing

function boundedInt(raw, fallback, max) {
  const n = Number(raw ?? fallback);
  return Number.isInteger(n) && n >= 0 && n <= max ? n : fallback;
}

async function handle(req, res) {
  const url = new URL(req.url ?? '/', 'http://localhost');
  const { pathname } = url;
  const method = req.method ?? 'GET';

  if (pathname.startsWith('/api/')) return handleApi(req, res, url);

  if (pathname === '/static/style.css') {
    res.writeHead(200, { 'content-type': 'text/css; charset=utf-8' });
    return res.end(STYLE);
  }
  if (pathname === '/static/app.js') {
    res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' });
    return res.end(APP_JS);
  }
  if (pathname === '/favicon.ico') {
    res.writeHead(204);
    return res.end();
  }

  if (pathname === '/checkout' && method === 'POST') {
    let form;
    try {
      form = new URLSearchParams(await readBody(req));
    } catch (err) {
      return sendHtml(res, err.status ?? 400, layout('Bad request', `<h1>Bad request</h1><p>${escapeHtml(err.message)}</p>`));
    }
    const values = Object.fromEntries(form.entries());
    const { errors, order } = validateOrder(values);
    if (errors.length) return sendHtml(res, 422, checkoutPage({ values, errors }));
    return sendHtml(res, 200, confirmationPage(createOrder(order)));
  }

  if (method !== 'GET' && method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD' });
    return res.end('Method not allowed');
  }

  if (pathname === '/') return sendHtml(res, 200, homePage());
  if (pathname === '/books') {
    return sendHtml(res, 200, booksPage({
      q: url.searchParams.get('q') ?? '',
      genre: url.searchParams.get('genre') ?? '',
    }));
  }
  const bookMatch = /^\/books\/([a-z0-9-]+)$/.exec(pathname);
  if (bookMatch && findBook(bookMatch[1])) return sendHtml(res, 200, bookPage(findBook(bookMatch[1])));
  if (pathname === '/cart') return sendHtml(res, 200, cartPage());
  if (pathname === '/checkout') {
    return sendHtml(res, 200, checkoutPage({
      values: { bookId: url.searchParams.get('book') ?? '', quantity: url.searchParams.get('qty') ?? '1' },
    }));
  }
  if (pathname === '/recommendations') {
    return sendHtml(res, 200, recommendationsPage(boundedInt(url.searchParams.get('delay'), 1000, MAX_SLOW_MS)));
  }
  if (pathname === '/stock') return sendHtml(res, 200, stockPage(boundedInt(url.searchParams.get('ms'), 2000, MAX_SLOW_MS)));
  if (pathname === '/reports') return sendHtml(res, 200, reportsPage(boundedInt(url.searchParams.get('ms'), 1500, MAX_SLOW_MS)));

  return sendHtml(res, 404, notFoundPage(pathname));
}

const server = http.createServer((req, res) => {
  handle(req, res).catch((err) => {
    console.error('[inkwell] request failed:', err);
    if (!res.headersSent) sendJson(res, 500, { error: 'Internal error' });
    else res.destroy();
  });
});

server.listen(PORT, HOST, () => {
  console.log(`[inkwell] listening on http://${HOST}:${PORT}/`);
});

let shuttingDown = false;
function shutdown(signal) {
  if (shuttingDown) return;
  shuttingDown = true;
  console.log(`[inkwell] ${signal} received, shutting down`);
  for (const timer of pendingTimers) clearTimeout(timer);
  pendingTimers.clear();
  server.close(() => process.exit(0));
  server.closeAllConnections();
  // Never hang on shutdown.
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
