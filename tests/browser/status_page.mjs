// The status page in a real browser (Debian's chromium, headless, driven by playwright-core),
// against a running backfill: tests/status_page.rs starts the job and runs this.
//
//   node status_page.mjs --url http://127.0.0.1:PORT --screenshot FILE
//
// Every GET /api/job the page makes goes to the job (playwright's route.fetch) and its
// answer is kept as the job gave it. Once the job is mid-way, the page's figures are read
// in one go and compared with the answer the page had just shown: every count, every name,
// each table's splits cell by cell, the throughput chart's points, equal. Independent GETs
// before and after bracket that answer (the route passes the job's answers on, unchanged).
// Then a screenshot, Stop (confirmed), and the page must show the server's 202 and then the
// job draining or gone. The last line on stdout is `report: {JSON}`; any mismatch exits 1
// with the reasons on stderr.

import { chromium } from 'playwright-core';

const arg = (name) => {
  const i = process.argv.indexOf(name);
  if (i < 0 || i + 1 >= process.argv.length) throw new Error(`usage: ${name} is required`);
  return process.argv[i + 1];
};
const url = arg('--url');
const screenshot = arg('--screenshot');
const executablePath = process.env.TSMIG_CHROMIUM || '/usr/bin/chromium';
// Generous: a 2-core CI machine runs the job, its servers and the browser at once.
const WAIT_MS = 60_000;

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

/** What the page shows, read in one go (the page cannot refresh in between), with the
 * number of answers it has shown so far. */
const readPage = (page) => page.evaluate(() => {
  const q = (root, id) => root.querySelector(`[data-testid="${id}"]`);
  const text = (root, id) => q(root, id).textContent.trim();
  const chartLines = (id) => [...q(document, id).querySelectorAll('polyline')]
    .map((l) => l.getAttribute('points').split(' ').length);
  const fields = {};
  for (const e of document.querySelectorAll('[data-testid]')) {
    const id = e.dataset.testid;
    // Once each: per-table cells are read with their row below.
    if (!(id in fields) && !e.closest('[data-testid="table-row"]')) fields[id] = e.textContent.trim();
  }
  return {
    refreshes: Number(q(document, 'updated').dataset.refreshes || 0),
    offline: !q(document, 'offline').hidden,
    fields,
    tables: [...document.querySelectorAll('[data-testid="table-row"]')].map((row) => ({
      name: text(row, 'table-name'),
      splits_done: text(row, 'table-splits-done'),
      splits_reading: text(row, 'table-splits-reading'),
      splits_total: text(row, 'table-splits-total'),
      rows_done: text(row, 'table-rows-done'),
      rows_estimated: text(row, 'table-rows-estimated'),
      cells: [...row.querySelectorAll('[data-testid="split-cell"]')].map((c) => c.dataset.state),
    })),
    throughput_lines: chartLines('throughput-chart'),
    lag_lines: chartLines('lag-chart'),
  };
});

/** A count as the page writes it: 1234567 → "1,234,567". */
const int = (n) => String(Math.round(n)).replace(/\B(?=(\d{3})+(?!\d))/g, ',');

/** The page's figures against the answer it showed: the list of differences. */
function compare(shown, job) {
  const wrong = [];
  const equal = (what, value, expected) => {
    if (value !== expected) {
      wrong.push(`${what}: the page shows ${JSON.stringify(value)}, the API answered ${JSON.stringify(expected)}`);
    }
  };
  const f = shown.fields;
  const p = job.progress;
  for (const [id, expected] of [
    ['job-name', job.name],
    ['job-mode', job.mode],
    ['job-phase', job.phase],
    ['process-index', String(job.process.index)],
    ['process-count', String(job.process.processes)],
    ['workers', String(job.process.workers)],
    ['workers-total', int(job.process.workers * job.process.processes)],
    ['rows-read', int(p.rows_read)],
    ['rows-read-headline', int(p.rows_read)],
    ['changes-read', int(p.changes_read)],
    ['points-written', int(p.points_written)],
    ['points-deleted', int(p.points_deleted)],
    ['splits-done', int(p.splits_done)],
    ['splits-total', int(p.splits_total)],
    ['rows-expected', int(p.rows_expected)],
    ['rows-per-second', int(p.rows_per_second)],
    ['lag-seconds', job.lag.seconds.toFixed(1)],
    ['lag-bytes', int(job.lag.bytes)],
    ['retries-sink', int(job.retries.sink)],
    ['retries-source', int(job.retries.source)],
    ['restarts', int(job.retries.restarts)],
    ['dead-letters', int(job.dead_letters.count)],
    ['dead-letters-flow', int(job.dead_letters.count)],
    ['checkpoint-position', job.checkpoint ? job.checkpoint.position : '–'],
  ]) {
    equal(id, f[id], expected);
  }
  // A duration the page writes as "N s", "N min N s" or "N h N min", from the API's ETA.
  if (p.eta_seconds == null) equal('eta', f.eta, '–');
  else if (!/^\d+ (s|min \d+ s|h \d+ min)$/.test(f.eta)) wrong.push(`eta: the page shows ${JSON.stringify(f.eta)}`);
  equal('tables', shown.tables.length, job.tables.length);
  shown.tables.forEach((t, i) => {
    const a = job.tables[i];
    if (!a) return;
    equal(`table ${i}: name`, t.name, a.name);
    for (const key of ['splits_done', 'splits_reading', 'splits_total', 'rows_done', 'rows_estimated']) {
      equal(`${a.name}: ${key}`, t[key], int(a[key]));
    }
    equal(`${a.name}: split cells`, t.cells.join(','), a.splits.map((s) => s.state).join(','));
  });
  // Rows read and points written, one point per second of history each (ten minutes kept).
  const recent = job.history.length;
  equal('throughput chart: lines × points', shown.throughput_lines.join(','), `${recent},${recent}`);
  equal('lag chart: points', shown.lag_lines.join(','), String(recent));
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
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on('pageerror', (e) => problems.push(`the page threw: ${e.message}`));
  // Until Stop: after it the job exits, and the page's requests fail as they should.
  let stopped = false;
  page.on('console', (m) => {
    if (m.type() === 'error' && !stopped) problems.push(`console error: ${m.text()}`);
  });
  // The answers the page got, in order: the page asks again only once it has shown one (or
  // failed to get one), so its n-th shown answer is the n-th kept here.
  const answers = [];
  await page.route('**/api/job', async (route) => {
    let response;
    try {
      response = await route.fetch();
    } catch (e) {
      await route.abort('connectionrefused');
      return;
    }
    const body = await response.text();
    if (response.ok()) answers.push(JSON.parse(body));
    await route.fulfill({ response, body });
  });
  await page.goto(url);

  // Enough to show: splits durable but not all, and a few seconds of history for the charts.
  await until('a finished split and 10 s of history', async () => {
    const job = await api();
    return job.phase === 'backfill' && job.progress.splits_done > 0 && job.history.length >= 10;
  });
  const before = await api();
  // An answer the page asked for after `before`.
  const seen = answers.length;
  await page.waitForFunction((n) =>
    Number(document.querySelector('[data-testid="updated"]').dataset.refreshes || 0) > n,
  seen, { timeout: WAIT_MS });
  const shown = await readPage(page);
  const after = await api();
  const answer = answers[shown.refreshes - 1];
  report.shown = {
    name: shown.fields['job-name'],
    phase: shown.fields['job-phase'],
    rows_read: shown.fields['rows-read'],
    splits_done: Number(shown.fields['splits-done'].replaceAll(',', '')),
    splits_total: Number(shown.fields['splits-total'].replaceAll(',', '')),
    tables: shown.tables.map((t) => ({ name: t.name, cells: t.cells.length })),
  };
  report.answer = { rows_read: answer.progress.rows_read, splits_done: answer.progress.splits_done };
  report.before = { rows_read: before.progress.rows_read, splits_done: before.progress.splits_done };
  report.after = { rows_read: after.progress.rows_read, splits_done: after.progress.splits_done };
  if (shown.offline) problems.push('the page shows the job offline');
  if (answers.length < shown.refreshes) problems.push(`the page showed ${shown.refreshes} answers, it got ${answers.length}`);
  problems.push(...compare(shown, answer));
  // The route passed the job's own answers: this one lies between two asked directly.
  for (const key of ['rows_read', 'points_written', 'splits_done']) {
    const [b, v, a] = [before.progress[key], answer.progress[key], after.progress[key]];
    if (!(b <= v && v <= a)) problems.push(`${key}: the page's answer ${v}, the API ${b} before and ${a} after`);
  }
  if (answer.phase !== 'backfill' || answer.progress.splits_done === answer.progress.splits_total) {
    problems.push(`the page should show the job mid-way: ${answer.phase}, ${answer.progress.splits_done} of ${answer.progress.splits_total} splits`);
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
