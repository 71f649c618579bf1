// TraceLoom's Playwright reporter: one JSON line per event, appended to the
// file named by TRACELOOM_EVENTS. The control plane reads results from this
// file only, never from stdout, so a webServer or globalSetup that prints
// cannot corrupt them.
'use strict';

const fs = require('fs');
const path = require('path');

function projectOf(test) {
  let suite = test.parent;
  while (suite) {
    if (typeof suite.project === 'function' && suite.project()) {
      return suite.project().name;
    }
    suite = suite.parent;
  }
  return '';
}

function titleOf(test) {
  // titlePath() is ['', project, file, ...describes, title].
  return test.titlePath().slice(3).join(' › ');
}

class TraceLoomReporter {
  constructor() {
    this.eventsPath = process.env.TRACELOOM_EVENTS;
    this.suiteDir = process.env.TRACELOOM_SUITE_DIR || process.cwd();
    this.attachmentsPath = process.env.TRACELOOM_ATTACHMENTS;
    this.shardDir = process.env.TRACELOOM_SHARD_DIR || this.suiteDir;
  }

  emit(event) {
    fs.appendFileSync(this.eventsPath, JSON.stringify(event) + '\n');
  }

  relative(file, base = this.suiteDir) {
    return path.relative(base, file).split(path.sep).join('/');
  }

  describe(test) {
    return {
      id: test.id,
      file: this.relative(test.location.file),
      line: test.location.line,
      project: projectOf(test),
      title: titleOf(test),
      expectedStatus: test.expectedStatus,
      retries: test.retries,
    };
  }

  printsToStdio() {
    return false;
  }

  // What decides where a project's tests can run: its browser (Playwright
  // picks chromium unless browserName or a device's defaultBrowserType says
  // otherwise), a branded channel, or an executable of the suite's own.
  project(p) {
    const use = p.use || {};
    return {
      name: p.name || '',
      browser: use.browserName || use.defaultBrowserType || 'chromium',
      channel: use.channel || null,
      ownExecutable: Boolean(use.launchOptions && use.launchOptions.executablePath),
      testDir: this.relative(p.testDir),
      dependencies: p.dependencies || [],
    };
  }

  onBegin(config, suite) {
    this.emit({
      type: 'begin',
      version: config.version,
      workers: config.workers,
      projects: (config.projects || []).map((p) => this.project(p)),
      tests: suite.allTests().map((t) => this.describe(t)),
      time: Date.now(),
    });
  }

  onTestBegin(test, result) {
    this.emit({ type: 'testBegin', id: test.id, retry: result.retry, time: Date.now() });
  }

  onTestEnd(test, result) {
    const attachments = [];
    for (const a of result.attachments) {
      if (!a.path) continue;
      const rel = this.relative(a.path, this.shardDir);
      attachments.push({ name: a.name, contentType: a.contentType, path: rel });
      if (this.attachmentsPath && !rel.startsWith('..')) {
        fs.appendFileSync(this.attachmentsPath, rel + '\0');
      }
    }
    const error = result.error ? (result.error.message || result.error.value || '') : null;
    this.emit({
      type: 'testEnd',
      id: test.id,
      retry: result.retry,
      status: result.status,
      durationMs: result.duration,
      outcome: test.outcome(),
      error: error ? String(error).slice(0, 4000) : null,
      attachments,
      time: Date.now(),
    });
  }

  onError(error) {
    this.emit({ type: 'error', message: String(error.message || error.value || error).slice(0, 4000) });
  }

  async onEnd(result) {
    this.emit({ type: 'end', status: result.status, time: Date.now() });
  }
}

module.exports = TraceLoomReporter;
