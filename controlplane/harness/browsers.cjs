// Make the suite's own Playwright launch a browser the host already has.
//
// Usage: node browsers.cjs SUITE_DIR OUT_DIR CHROMIUM_PATH
//
// Playwright looks for Chromium under PLAYWRIGHT_BROWSERS_PATH in folders
// named after the revision its playwright-core was built for. This writes
// those folders for the suite's version, each holding a small launcher that
// starts CHROMIUM_PATH with the flags a shared, offline machine needs. The
// suite's config is left untouched.
'use strict';

const fs = require('fs');
const path = require('path');

const [suiteDir, outDir, chromiumPath] = process.argv.slice(2);
if (!suiteDir || !outDir || !chromiumPath) {
  console.error('usage: browsers.cjs SUITE_DIR OUT_DIR CHROMIUM_PATH');
  process.exit(2);
}

// playwright-core does not export browsers.json, so look for it the way
// Node would find the package: in node_modules folders from the suite up.
function findBrowsersJson(start) {
  const nested = [
    ['playwright-core'],
    ['playwright', 'node_modules', 'playwright-core'],
    ['@playwright', 'test', 'node_modules', 'playwright-core'],
  ];
  for (let dir = path.resolve(start); ; dir = path.dirname(dir)) {
    for (const parts of nested) {
      const candidate = path.join(dir, 'node_modules', ...parts, 'browsers.json');
      if (fs.existsSync(candidate)) return candidate;
    }
    if (path.dirname(dir) === dir) break;
  }
  console.error(`no playwright-core/browsers.json at or above ${start}`);
  process.exit(3);
}

const browsersJson = findBrowsersJson(suiteDir);
const { browsers } = JSON.parse(fs.readFileSync(browsersJson, 'utf8'));

// Folder and executable names across Playwright versions (older ones used
// chrome-linux/, newer ones chrome-linux64/ and a separate headless shell).
const LAYOUTS = {
  chromium: [['chrome-linux', 'chrome'], ['chrome-linux64', 'chrome']],
  'chromium-headless-shell': [
    ['chrome-linux', 'headless_shell'],
    ['chrome-headless-shell-linux64', 'chrome-headless-shell'],
  ],
};

fs.mkdirSync(outDir, { recursive: true });
const launcher = path.join(outDir, 'chromium-launcher');
fs.writeFileSync(
  launcher,
  '#!/bin/sh\n' +
    `exec ${JSON.stringify(chromiumPath)} --no-sandbox --disable-gpu ` +
    '--disable-background-networking --disable-component-update --disable-sync "$@"\n',
  { mode: 0o755 },
);

for (const browser of browsers) {
  const layouts = LAYOUTS[browser.name];
  if (!layouts) continue;
  const folder = path.join(outDir, `${browser.name.replace(/-/g, '_')}-${browser.revision}`);
  for (const [sub, exe] of layouts) {
    fs.mkdirSync(path.join(folder, sub), { recursive: true });
    const link = path.join(folder, sub, exe);
    fs.rmSync(link, { force: true });
    fs.symlinkSync(launcher, link);
  }
  // The launcher is not Playwright's own build, so its library check of the
  // download does not apply; the marker tells Playwright it was done.
  fs.writeFileSync(path.join(folder, 'DEPENDENCIES_VALIDATED'), '');
}
