// Give the suite's own Playwright the browsers this host has, and say which.
//
// Usage: node browsers.cjs SUITE_DIR OUT_DIR CHROMIUM_PATH [REPORT_FILE]
//
// Playwright looks for each browser under PLAYWRIGHT_BROWSERS_PATH in a
// folder named after the revision its playwright-core was built for. This
// makes OUT_DIR such a folder for the suite's version:
//
//  - a browser of exactly that revision in the host's own store (the
//    PLAYWRIGHT_BROWSERS_PATH the host had, else ~/.cache/ms-playwright) is
//    linked in as it is;
//  - Chromium otherwise comes from CHROMIUM_PATH (when not empty), or from
//    the newest Playwright Chromium in the store, through a small launcher
//    with the flags a shared, offline machine needs;
//  - Firefox and WebKit have no stand-in (Playwright drives its own builds
//    of them only), so without their revision they are unavailable.
//
// REPORT_FILE, when given, gets JSON: the suite's Playwright version and, for chromium,
// firefox, webkit and the branded channels, whether it is available and why
// not. The suite's config is left untouched.
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');

const [suiteDir, outDir, chromiumPath, reportFile] = process.argv.slice(2);
if (!suiteDir || !outDir || chromiumPath === undefined) {
  console.error('usage: browsers.cjs SUITE_DIR OUT_DIR CHROMIUM_PATH [REPORT_FILE]');
  process.exit(2);
}

function writeReport(report) {
  if (reportFile) fs.writeFileSync(reportFile, JSON.stringify(report));
}

// The suite's playwright-core, as its @playwright/test would load it: by
// Node's own resolution from the suite's folder, then from each package's
// real folder (so pnpm's links to siblings in node_modules/.pnpm work), or
// else in the node_modules folders from the suite up.
function resolveFrom(dir, name) {
  try {
    return path.dirname(require.resolve(`${name}/package.json`, { paths: [dir] }));
  } catch {
    return null;
  }
}

function findCore(start) {
  let here = path.resolve(start);
  for (const name of ['@playwright/test', 'playwright', 'playwright-core']) {
    const found = resolveFrom(here, name);
    if (found) here = fs.realpathSync(found);
  }
  if (path.basename(here) === 'playwright-core' && fs.existsSync(path.join(here, 'browsers.json'))) {
    return here;
  }
  const nested = [
    ['playwright-core'],
    ['playwright', 'node_modules', 'playwright-core'],
    ['@playwright', 'test', 'node_modules', 'playwright-core'],
  ];
  for (let dir = path.resolve(start); ; dir = path.dirname(dir)) {
    for (const parts of nested) {
      const candidate = path.join(dir, 'node_modules', ...parts);
      if (fs.existsSync(path.join(candidate, 'browsers.json'))) return candidate;
    }
    if (path.dirname(dir) === dir) break;
  }
  return null;
}

// Executables inside a browser's folder, across Playwright versions (older
// ones used chrome-linux/, newer ones chrome-linux64/ and a headless shell).
const EXECUTABLES = {
  chromium: [['chrome-linux', 'chrome'], ['chrome-linux64', 'chrome']],
  'chromium-headless-shell': [
    ['chrome-linux', 'headless_shell'],
    ['chrome-headless-shell-linux64', 'chrome-headless-shell'],
  ],
  firefox: [['firefox', 'firefox']],
  webkit: [['pw_run.sh']],
  ffmpeg: [['ffmpeg-linux']],
};
// Where Playwright looks for the branded browsers of a channel on Linux.
const CHANNELS = {
  chrome: '/opt/google/chrome/chrome',
  'chrome-beta': '/opt/google/chrome-beta/chrome',
  'chrome-dev': '/opt/google/chrome-unstable/chrome',
  msedge: '/opt/microsoft/msedge/msedge',
  'msedge-beta': '/opt/microsoft/msedge-beta/msedge',
  'msedge-dev': '/opt/microsoft/msedge-dev/msedge',
};

function folderName(name, revision) {
  return `${name.replace(/-/g, '_')}-${revision}`;
}

function executableIn(folder, name) {
  for (const parts of EXECUTABLES[name] || []) {
    const candidate = path.join(folder, ...parts);
    if (fs.existsSync(candidate)) return candidate;
  }
  return null;
}

function hostStore() {
  const given = process.env.TRACELOOM_HOST_BROWSERS_PATH;
  if (given && given !== '0') return given;
  return path.join(os.homedir(), '.cache', 'ms-playwright');
}

// The newest Playwright Chromium in the store, of whatever revision.
function newestStoreChromium(store) {
  let best = null;
  let names = [];
  try {
    names = fs.readdirSync(store);
  } catch {
    return null;
  }
  for (const name of names) {
    const match = /^chromium-(\d+)$/.exec(name);
    if (!match) continue;
    const exe = executableIn(path.join(store, name), 'chromium');
    if (exe && (!best || Number(match[1]) > best.revision)) {
      best = { revision: Number(match[1]), exe };
    }
  }
  return best && best.exe;
}

function writeLauncher(chromium) {
  const launcher = path.join(outDir, 'chromium-launcher');
  fs.writeFileSync(
    launcher,
    '#!/bin/sh\n' +
      `exec ${JSON.stringify(chromium)} --no-sandbox --disable-gpu ` +
      '--disable-background-networking --disable-component-update --disable-sync "$@"\n',
    { mode: 0o755 },
  );
  return launcher;
}

function shimChromium(entry, launcher) {
  const folder = path.join(outDir, folderName(entry.name, entry.revision));
  for (const [sub, exe] of EXECUTABLES[entry.name]) {
    fs.mkdirSync(path.join(folder, sub), { recursive: true });
    const link = path.join(folder, sub, exe);
    fs.rmSync(link, { force: true });
    fs.symlinkSync(launcher, link);
  }
  // The launcher is not Playwright's own build, so its library check of the
  // download does not apply; the marker tells Playwright it was done.
  fs.writeFileSync(path.join(folder, 'DEPENDENCIES_VALIDATED'), '');
}

function main() {
  const report = { playwright: null, browsers: {}, channels: {} };
  const core = findCore(suiteDir);
  if (!core) {
    const reason = `no playwright-core at or above ${suiteDir}`;
    for (const name of ['chromium', 'firefox', 'webkit']) {
      report.browsers[name] = { available: false, reason };
    }
    writeReport(report);
    console.error(reason);
    process.exit(3);
  }
  report.playwright = JSON.parse(fs.readFileSync(path.join(core, 'package.json'), 'utf8')).version;
  const { browsers } = JSON.parse(fs.readFileSync(path.join(core, 'browsers.json'), 'utf8'));
  const store = hostStore();
  fs.mkdirSync(outDir, { recursive: true });

  const standIn = chromiumPath || newestStoreChromium(store);
  const launcher = standIn ? writeLauncher(standIn) : null;
  for (const entry of browsers) {
    if (!EXECUTABLES[entry.name]) continue;
    const name = folderName(entry.name, entry.revision);
    const own = path.join(store, name);
    const isChromium = entry.name.startsWith('chromium');
    const link = path.join(outDir, name);
    fs.rmSync(link, { force: true, recursive: true });
    if (isChromium && chromiumPath) {
      shimChromium(entry, launcher);
    } else if (executableIn(own, entry.name)) {
      fs.symlinkSync(own, link);
    } else if (isChromium && launcher) {
      shimChromium(entry, launcher);
    }
    if (['chromium', 'firefox', 'webkit'].includes(entry.name)) {
      report.browsers[entry.name] = availability(entry, own, link, report.playwright);
    }
  }
  for (const [channel, exe] of Object.entries(CHANNELS)) {
    report.channels[channel] = fs.existsSync(exe)
      ? { available: true }
      : { available: false, reason: `channel '${channel}' needs ${exe}, which this host lacks` };
  }
  writeReport(report);
}

function availability(entry, own, link, version) {
  const exe = executableIn(link, entry.name);
  if (exe) return { available: true, path: fs.realpathSync(exe) };
  const title = { chromium: 'Chromium', firefox: 'Firefox', webkit: 'WebKit' }[entry.name];
  const hint = entry.name === 'chromium' ? ', and TRACELOOM_CHROMIUM_PATH is not set' : '';
  return {
    available: false,
    reason:
      `this host has no Playwright ${title} build ${entry.revision}, which` +
      ` Playwright ${version} needs (looked for ${own})${hint}`,
  };
}

main();
