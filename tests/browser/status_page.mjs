// The status page in a real browser (Debian's chromium, headless, driven by playwright-core),
// against a running backfill: tests/status_page.rs starts the job and runs this.
//
//   node status_page.mjs --url http://127.0.0.1:PORT --screenshot FILE
//
// It waits until the page shows the job, checks that every number it reads is the API's
// (GET /api/job right before and right after: fixed values equal, counters between the
// two), saves a screenshot, clicks Stop, and checks that the page shows the server's 202
// and then the job draining or gone. The last line on stdout is `report: {JSON}`; any
// mismatch exits 1 with the reasons on stderr.

import { chromium } from 'playwright-core';

const arg = (name) => {
  const i = process.argv.indexOf(name);
  if (i < 0 || i + 1 >= process.argv.length) throw new Error(`usage: ${name} is required`);
  return process.argv[i + 1];
};
const url = arg('--url');
const screenshot = arg('--screenshot');
const executablePath = process.env.TSMIG_CHROMIUM || '/usr/bin/chromium';
const WAIT_MS = 30_000;

const api = async () => {
  const r = await fetch(url + '/api/job', { cache: 'no-store' });
  if (!r.ok) throw new Error(`GET /api/job answered ${r.status}`);
  return r.json();
};

/** Polls `probe` until it returns something truthy, for `WAIT_MS` at most. */
async function until(what, probe) {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`waited ${WAIT_MS / 1000} s for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** What the page shows, read in one go (the page cannot refresh in between). */
const readPage = (page) => page.evaluate(() => {
  const text = (root, id) => root.querySelector(`[data-testid="${id}"]`).textContent.trim();
  const number = (root, id) => {
    const t = text(root, id);
    if (!/^[0-9,]+$/.test(t)) throw new Error(`${id} shows ${JSON.stringify(t)}, not a count`);
    return Number(t.replaceAll(',', ''));
  };
  return {
    name: text(document, 'job-name'),
    mode: text(document, 'job-mode'),
    phase: text(document, 'job-phase'),
    process_index: number(document, 'process-index'),
    processes: number(document, 'process-count'),
    workers: number(document, 'workers'),
    rows_read: number(document, 'rows-read'),
    rows_expected: number(document, 'rows-expected'),
    points_written: number(document, 'points-written'),
    splits_done: number(document, 'splits-done'),
    splits_total: number(document, 'splits-total'),
    dead_letters: number(document, 'dead-letters'),
    tables: [...document.querySelectorAll('[data-testid="table-row"]')].map((row) => ({
      name: text(row, 'table-name'),
      splits_done: number(row, 'table-splits-done'),
      splits_total: number(row, 'table-splits-total'),
      rows_estimated: number(row, 'table-rows-estimated'),
      split_cells: row.querySelectorAll('[data-testid="split-cell"]').length,
      split_cells_done: row.querySelectorAll('[data-testid="split-cell"][data-state="done"]').length,
    })),
  };
});

const refreshes = (page) => page.evaluate(() =>
  Number(document.querySelector('[data-testid="updated"]').dataset.refreshes || 0));

/** The page's figures against the API's before and after: the list of differences. */
function compare(shown, before, after) {
  const wrong = [];
  const equal = (what, value, expected) => {
    if (value !== expected) wrong.push(`${what}: the page shows ${JSON.stringify(value)}, the API ${JSON.stringify(expected)}`);
  };
  const between = (what, value, low, high) => {
    if (!(low <= value && value <= high)) wrong.push(`${what}: the page shows ${value}, the API ${low} before and ${high} after`);
  };
  for (const [what, value, b, a] of [
    ['name', shown.name, before.name, after.name],
    ['mode', shown.mode, before.mode, after.mode],
    ['phase', shown.phase, before.phase, after.phase],
    ['process index', shown.process_index, before.process.index, after.process.index],
    ['processes', shown.processes, before.process.processes, after.process.processes],
    ['workers', shown.workers, before.process.workers, after.process.workers],
    ['splits total', shown.splits_total, before.progress.splits_total, after.progress.splits_total],
    ['rows expected', shown.rows_expected, before.progress.rows_expected, after.progress.rows_expected],
    ['tables', shown.tables.map((t) => t.name).join(','), before.tables.map((t) => t.name).join(','),
      after.tables.map((t) => t.name).join(',')],
  ]) {
    equal(what + ' (before)', value, b);
    equal(what + ' (after)', value, a);
  }
  between('rows read', shown.rows_read, before.progress.rows_read, after.progress.rows_read);
  between('points written', shown.points_written, before.progress.points_written, after.progress.points_written);
  between('splits done', shown.splits_done, before.progress.splits_done, after.progress.splits_done);
  between('dead letters', shown.dead_letters, before.dead_letters.count, after.dead_letters.count);
  shown.tables.forEach((t, i) => {
    const [b, a] = [before.tables[i], after.tables[i]];
    if (!b || !a) return;
    equal(`${t.name}: splits total`, t.splits_total, b.splits_total);
    equal(`${t.name}: split cells`, t.split_cells, b.splits_total);
    equal(`${t.name}: rows estimated`, t.rows_estimated, b.rows_estimated);
    between(`${t.name}: splits done`, t.splits_done, b.splits_done, a.splits_done);
    equal(`${t.name}: done cells`, t.split_cells_done, t.splits_done);
  });
  return wrong;
}

// Playwright turns off Chromium's background networking already; QUIC and the GPU too, as
// nothing outside loopback can be reached and there is no display.
const browser = await chromium.launch({
  executablePath, headless: true, args: ['--disable-gpu', '--disable-quic'],
});
const problems = [];
const report = {};
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 960 } });
  page.on('pageerror', (e) => problems.push(`the page threw: ${e.message}`));
  // Until Stop: after it the job exits, and the page's requests fail as they should.
  let stopped = false;
  page.on('console', (m) => {
    if (m.type() === 'error' && !stopped) problems.push(`console error: ${m.text()}`);
  });
  await page.goto(url);

  // Enough to show: a split durable and a few seconds of history for the charts.
  await until('a finished split and 5 s of history', async () => {
    const job = await api();
    return job.phase === 'backfill' && job.progress.splits_done > 0 && job.history.length >= 5;
  });
  await page.waitForFunction(() =>
    document.querySelectorAll('[data-testid="table-row"]').length > 0, null, { timeout: WAIT_MS });

  const before = await api();
  // The page's next answer may have been asked for before `before`; the one after it was not.
  const seen = await refreshes(page);
  await page.waitForFunction((n) =>
    Number(document.querySelector('[data-testid="updated"]').dataset.refreshes || 0) >= n,
  seen + 2, { timeout: WAIT_MS });
  const shown = await readPage(page);
  const after = await api();
  report.shown = shown;
  report.before = { rows_read: before.progress.rows_read, splits_done: before.progress.splits_done };
  report.after = { rows_read: after.progress.rows_read, splits_done: after.progress.splits_done };
  problems.push(...compare(shown, before, after));
  if (shown.splits_done === 0 || shown.splits_done === shown.splits_total) {
    problems.push(`the page should show the job mid-way, it shows ${shown.splits_done} of ${shown.splits_total} splits`);
  }

  await page.screenshot({ path: screenshot, fullPage: true });

  // Stop asks for confirmation first.
  page.once('dialog', (d) => { report.dialog = d.message(); d.accept(); });
  stopped = true;
  await page.click('[data-testid="stop"]');
  await page.waitForFunction(() =>
    document.querySelector('[data-testid="action-result"]').textContent !== '', null, { timeout: WAIT_MS });
  report.stop_answer = (await page.textContent('[data-testid="action-result"]')).trim();
  if (!report.stop_answer.startsWith('POST /api/job/stop: 202')) {
    problems.push(`Stop: the page shows ${JSON.stringify(report.stop_answer)}`);
  }
  // The page follows the job: draining, then gone (the process exits once drained).
  report.after_stop = await page.waitForFunction(() => {
    if (!document.querySelector('[data-testid="offline"]').hidden) return 'offline';
    const phase = document.querySelector('[data-testid="job-phase"]').textContent;
    return phase === 'draining' || phase === 'done' ? phase : null;
  }, null, { timeout: WAIT_MS }).then((h) => h.jsonValue());
} catch (e) {
  problems.push(String(e && e.stack || e));
} finally {
  await browser.close();
}
console.log('report: ' + JSON.stringify(report));
if (problems.length) {
  console.error(problems.join('\n'));
  process.exit(1);
}
