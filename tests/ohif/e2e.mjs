#!/usr/bin/env node
// OHIF viewer end-to-end check against a server that serves the viewer at /viewer/ and
// DICOMweb at /dicom-web on the same origin (pacs --viewer-dir DIR).
//
//   node tests/ohif/e2e.mjs --base http://127.0.0.1:PORT --patient-name "DOE^JOHN" \
//        --study-uid 1.2.3 --screenshot-dir DIR [--timeout-ms 60000] [--min-nonblank 0.01] [--strict]
//
// 1. opens ${base}/viewer/ (study list), waits until the patient's family name shows,
//    saves studylist.png;
// 2. opens ${base}/viewer/viewer?StudyInstanceUIDs=${uid}, waits until a viewport canvas
//    has non-background pixels (> --min-nonblank of its area), saves viewer.png;
//    With --strict, it then lets the viewer settle for 3 s and also fails if any /dicom-web
//    request answered 4xx/5xx (e.g. a frame in a transfer syntax the server can't serve);
// 3. prints one JSON line (the summary) on stdout and exits 0, or 1 with the reason, the
//    browser console errors and the failed requests on stderr.
// DIR also gets network.json (every same-origin request: method, URL, Accept, status,
// content type) and console.json; on failure, failure.png.
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

function usage(msg) {
  if (msg) console.error(`e2e: ${msg}`);
  console.error(
    'usage: node tests/ohif/e2e.mjs --base http://127.0.0.1:PORT --patient-name "DOE^JOHN" ' +
      '--study-uid 1.2.3 --screenshot-dir DIR [--timeout-ms 60000] [--min-nonblank 0.01] [--strict]',
  );
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { timeoutMs: 60000, minNonblank: 0.01, strict: false };
  const names = {
    '--base': 'base',
    '--patient-name': 'patientName',
    '--study-uid': 'studyUid',
    '--screenshot-dir': 'screenshotDir',
    '--timeout-ms': 'timeoutMs',
    '--min-nonblank': 'minNonblank',
  };
  for (let i = 0; i < argv.length; i++) {
    let [k, v] = argv[i].split(/=(.*)/s, 2);
    if (k === '-h' || k === '--help') usage();
    if (k === '--strict') {
      opts.strict = true;
      continue;
    }
    if (!(k in names)) usage(`unknown argument ${k}`);
    if (v === undefined) {
      if (i + 1 >= argv.length) usage(`${k} needs a value`);
      v = argv[++i];
    }
    opts[names[k]] = v;
  }
  for (const k of ['base', 'patientName', 'studyUid', 'screenshotDir']) {
    if (!opts[k]) usage(`missing --${k.replace(/[A-Z]/g, c => '-' + c.toLowerCase())}`);
  }
  opts.base = opts.base.replace(/\/+$/, '');
  opts.timeoutMs = Number(opts.timeoutMs);
  opts.minNonblank = Number(opts.minNonblank);
  if (!(opts.timeoutMs > 0) || !(opts.minNonblank >= 0)) usage('bad --timeout-ms or --min-nonblank');
  return opts;
}

const opts = parseArgs(process.argv.slice(2));
const origin = new URL(opts.base).origin;
fs.mkdirSync(opts.screenshotDir, { recursive: true });

// DICOM PN "FAMILY^GIVEN^MIDDLE": OHIF shows it formatted ("FAMILY, GIVEN MIDDLE"),
// so match the family name alone, case-insensitively.
const familyName = opts.patientName.split('^')[0].trim().toUpperCase();
if (!familyName) usage('--patient-name has no family name');

const t0 = Date.now();
const ms = () => Date.now() - t0;
const consoleMessages = []; // {type, text, url}
const network = []; // same-origin requests
const failedRequests = []; // {method, url, status|error}
const externalRequests = []; // any request to another origin (there should be none)
const pending = new Map();

function shortUrl(u) {
  return u.startsWith(origin) ? u.slice(origin.length) : u;
}

function attach(page) {
  page.on('console', m => {
    const loc = m.location();
    consoleMessages.push({ t: ms(), type: m.type(), text: m.text().slice(0, 2000), url: loc && loc.url ? shortUrl(loc.url) : undefined });
  });
  page.on('pageerror', e => consoleMessages.push({ t: ms(), type: 'pageerror', text: String(e && e.stack || e).slice(0, 2000) }));
  page.on('crash', () => consoleMessages.push({ t: ms(), type: 'crash', text: 'page crashed' }));
  page.on('request', r => {
    const url = r.url();
    if (url.startsWith('data:') || url.startsWith('blob:')) return;
    if (!url.startsWith(origin + '/')) {
      externalRequests.push({ method: r.method(), url });
      return;
    }
    const entry = { t: ms(), method: r.method(), url: shortUrl(url), accept: r.headers()['accept'], status: null, type: null };
    pending.set(r, entry);
    network.push(entry);
  });
  page.on('response', res => {
    const entry = pending.get(res.request());
    if (!entry) return;
    entry.status = res.status();
    entry.type = res.headers()['content-type'] || null;
    if (res.status() >= 400) failedRequests.push({ method: entry.method, url: entry.url, status: res.status() });
  });
  page.on('requestfailed', r => {
    const entry = pending.get(r);
    const failure = (r.failure() && r.failure().errorText) || 'failed';
    if (entry) entry.error = failure;
    // Aborted image requests are routine when OHIF cancels prefetch on navigation.
    failedRequests.push({ method: r.method(), url: shortUrl(r.url()), error: failure });
  });
}

function consoleErrors() {
  return consoleMessages.filter(m => m.type === 'error' || m.type === 'pageerror' || m.type === 'crash');
}

function dicomwebSummary() {
  // Distinct request shapes: method + path with UIDs and frame numbers collapsed.
  const shapes = new Map();
  for (const e of network) {
    if (!e.url.startsWith('/dicom-web')) continue;
    const [p, q] = e.url.split('?');
    const shape =
      e.method + ' ' +
      p.replace(/\/(studies|series|instances)\/[0-9.]+/g, '/$1/{uid}').replace(/\/frames\/[0-9,]+/, '/frames/{n}') +
      (q ? '?' + q.split('&').map(kv => kv.split('=')[0] + (/^(includefield|limit|offset|fuzzymatching)=/.test(kv) ? '=' + kv.split('=')[1] : '=…')).join('&') : '');
    const key = shape + ' | Accept: ' + (e.accept || '-');
    const s = shapes.get(key) || { request: shape, accept: e.accept || null, count: 0, statuses: {} };
    s.count++;
    s.statuses[e.status ?? e.error ?? 'pending'] = (s.statuses[e.status ?? e.error ?? 'pending'] || 0) + 1;
    shapes.set(key, s);
  }
  return [...shapes.values()];
}

function writeLogs() {
  try {
    fs.writeFileSync(path.join(opts.screenshotDir, 'network.json'), JSON.stringify({ requests: network, dicomweb: dicomwebSummary(), external: externalRequests }, null, 1));
    fs.writeFileSync(path.join(opts.screenshotDir, 'console.json'), JSON.stringify(consoleMessages, null, 1));
  } catch (e) {
    console.error(`e2e: could not write logs: ${e}`);
  }
}

const summary = {
  ok: false,
  base: opts.base,
  patientName: opts.patientName,
  studyUid: opts.studyUid,
  patientFound: false,
  studyListMs: null,
  viewerMs: null,
  nonblankFraction: null,
  canvas: null,
  consoleErrors: 0,
  failedRequests: [],
  externalRequests: [],
  dicomwebRequests: 0,
  screenshots: [],
  error: null,
};

// Pixel probe run inside the page: for every visible viewport canvas, the fraction of
// pixels that differ from the canvas's most common colour (its background).
function probeCanvases() {
  const sel = ['.cornerstone-viewport-element canvas', '[data-viewport-uid] canvas', '.viewport-element canvas', 'canvas'];
  let canvases = [];
  for (const s of sel) {
    canvases = [...document.querySelectorAll(s)];
    if (canvases.length) break;
  }
  const out = [];
  for (const c of canvases) {
    const w = c.width, h = c.height;
    const r = c.getBoundingClientRect();
    if (w < 32 || h < 32 || r.width < 32 || r.height < 32) continue;
    let data;
    try {
      const tmp = document.createElement('canvas');
      tmp.width = w;
      tmp.height = h;
      const ctx = tmp.getContext('2d', { willReadFrequently: true });
      ctx.drawImage(c, 0, 0);
      data = ctx.getImageData(0, 0, w, h).data;
    } catch (e) {
      out.push({ w, h, error: String(e) });
      continue;
    }
    const n = w * h;
    const hist = new Map();
    for (let i = 0; i < data.length; i += 4) {
      const k = ((data[i] >> 3) << 10) | ((data[i + 1] >> 3) << 5) | (data[i + 2] >> 3);
      hist.set(k, (hist.get(k) || 0) + 1);
    }
    let bg = 0, bgCount = -1;
    for (const [k, v] of hist) if (v > bgCount) { bg = k; bgCount = v; }
    const br = (bg >> 10) << 3, bgG = ((bg >> 5) & 31) << 3, bb = (bg & 31) << 3;
    let diff = 0;
    for (let i = 0; i < data.length; i += 4) {
      if (Math.abs(data[i] - br) + Math.abs(data[i + 1] - bgG) + Math.abs(data[i + 2] - bb) > 24) diff++;
    }
    out.push({ w, h, colours: hist.size, background: [br, bgG, bb], nonblank: diff / n });
  }
  return out;
}

// The page itself must be OHIF's index.html, served as HTML.
function checkDocument(res, url, hint) {
  if (!res) return;
  const type = res.headers()['content-type'] || '';
  if (res.status() >= 400 || !type.startsWith('text/html')) {
    throw new Error(`GET ${url} answered ${res.status()} (${type || 'no content-type'}), not OHIF's index.html: ${hint}`);
  }
}

async function main() {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: 30000,
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 }, serviceWorkers: 'block' });
    const page = await context.newPage();
    attach(page);

    // --- study list --------------------------------------------------------------------
    const listUrl = `${opts.base}/viewer/`;
    let deadline = Date.now() + opts.timeoutMs;
    const left = () => Math.max(1000, deadline - Date.now());
    const listRes = await page.goto(listUrl, { waitUntil: 'domcontentloaded', timeout: left() });
    checkDocument(listRes, listUrl, 'is the server started with --viewer-dir DIR (setup.sh prints DIR)?');
    try {
      await page.waitForFunction(
        fam => document.body && document.body.innerText.toUpperCase().includes(fam),
        familyName,
        { timeout: left(), polling: 500 },
      );
      summary.patientFound = true;
      summary.studyListMs = ms();
    } catch (e) {
      throw new Error(`study list at ${listUrl} did not show patient family name "${familyName}" within ${opts.timeoutMs} ms`);
    }
    // Let the row finish rendering (dates, modalities) before the screenshot.
    await page.waitForTimeout(500);
    const listPng = path.join(opts.screenshotDir, 'studylist.png');
    await page.screenshot({ path: listPng });
    summary.screenshots.push(listPng);

    // --- viewer --------------------------------------------------------------------------
    const viewerUrl = `${opts.base}/viewer/viewer?StudyInstanceUIDs=${encodeURIComponent(opts.studyUid)}`;
    const tViewer = Date.now();
    deadline = Date.now() + opts.timeoutMs;
    const viewerRes = await page.goto(viewerUrl, { waitUntil: 'domcontentloaded', timeout: left() });
    checkDocument(viewerRes, viewerUrl, 'unknown paths under /viewer/ must fall back to DIR/index.html (client-side routes)');
    let best = null, probes = [];
    while (Date.now() < deadline) {
      probes = await page.evaluate(probeCanvases).catch(e => [{ error: String(e) }]);
      for (const p of probes) if (p.nonblank !== undefined && (!best || p.nonblank > best.nonblank)) best = p;
      if (best && best.nonblank > opts.minNonblank) break;
      await page.waitForTimeout(500);
    }
    summary.nonblankFraction = best ? Number(best.nonblank.toFixed(4)) : 0;
    summary.canvas = best ? { width: best.w, height: best.h, colours: best.colours, background: best.background } : null;
    if (!best || !(best.nonblank > opts.minNonblank)) {
      const what = probes.length ? `canvases: ${JSON.stringify(probes)}` : 'no viewport canvas found';
      throw new Error(`viewer at ${viewerUrl} showed no image within ${opts.timeoutMs} ms (need > ${opts.minNonblank} non-background pixels; ${what})`);
    }
    summary.viewerMs = Date.now() - tViewer;
    // One more frame so the screenshot shows the settled image.
    await page.waitForTimeout(500);
    const viewerPng = path.join(opts.screenshotDir, 'viewer.png');
    await page.screenshot({ path: viewerPng });
    summary.screenshots.push(viewerPng);
    if (opts.strict) {
      await page.waitForTimeout(3000);
      const bad = failedRequests.filter(f => f.url.startsWith('/dicom-web') && f.status >= 400);
      if (bad.length) {
        throw new Error(`--strict: ${bad.length} DICOMweb request(s) failed, first: ${bad[0].method} ${bad[0].url} -> ${bad[0].status}`);
      }
    }
    summary.ok = true;
  } catch (e) {
    // Playwright appends a multi-line "Call log" with terminal colours: keep the first line.
    summary.error = String(e && e.message ? e.message : e).split('\n')[0].replace(/\u001b\[[0-9;]*m/g, '');
    try {
      const pages = browser.contexts().flatMap(c => c.pages());
      if (pages.length) {
        const p = path.join(opts.screenshotDir, 'failure.png');
        await pages[0].screenshot({ path: p, timeout: 5000 });
        summary.screenshots.push(p);
      }
    } catch {}
  } finally {
    await browser.close().catch(() => {});
  }
}

// Hard bound on the whole run, whatever hangs.
const hardLimit = setTimeout(() => {
  summary.error = summary.error || `hard time limit (${2 * opts.timeoutMs + 60000} ms) reached`;
  finish();
}, 2 * opts.timeoutMs + 60000);
hardLimit.unref();

let finished = false;
function finish() {
  if (finished) return;
  finished = true;
  const errs = consoleErrors();
  summary.consoleErrors = errs.length;
  summary.failedRequests = failedRequests.filter(f => f.status || !/ERR_ABORTED/.test(f.error || '')).slice(0, 50);
  summary.externalRequests = externalRequests.map(r => r.url).slice(0, 20);
  summary.dicomwebRequests = network.filter(e => e.url.startsWith('/dicom-web')).length;
  summary.totalMs = ms();
  writeLogs();
  if (!summary.ok) {
    console.error(`e2e FAILED: ${summary.error}`);
    console.error(`--- browser console errors (${errs.length}):`);
    for (const m of errs.slice(0, 40)) console.error(`  [${m.type} +${m.t}ms] ${m.text}${m.url ? '  (' + m.url + ')' : ''}`);
    const warn = consoleMessages.filter(m => m.type === 'warning');
    if (warn.length) {
      console.error(`--- browser console warnings (${warn.length}, first 15):`);
      for (const m of warn.slice(0, 15)) console.error(`  [+${m.t}ms] ${m.text.slice(0, 300)}`);
    }
    console.error(`--- failed requests (${failedRequests.length}):`);
    for (const f of failedRequests.slice(0, 60)) console.error(`  ${f.method} ${f.url} -> ${f.status ?? f.error}`);
    const dw = dicomwebSummary();
    console.error(`--- DICOMweb requests (${summary.dicomwebRequests}):`);
    for (const s of dw) console.error(`  ${s.request}  [Accept: ${s.accept}] x${s.count} ${JSON.stringify(s.statuses)}`);
    if (externalRequests.length) console.error(`--- requests to other origins: ${summary.externalRequests.join(' ')}`);
    console.error(`--- logs: ${path.join(opts.screenshotDir, 'network.json')}, ${path.join(opts.screenshotDir, 'console.json')}`);
  }
  console.log(JSON.stringify(summary));
  process.exit(summary.ok ? 0 : 1);
}

main().then(finish, e => {
  summary.error = summary.error || `harness error: ${e && e.stack ? e.stack : e}`;
  finish();
});
