// scripts/test.mjs — the test command (`npm test`, `npm test -- kv`).
//
// 1. Builds dist/ (`node build.mjs --quiet`): tests import the package as users get it.
// 2. Runs every test/**/*.test.ts (sorted; CLI args keep only paths containing one of them)
//    as `node --import tsx <file>` (an argument `=<name>` keeps exactly that one, e.g.
//    `=test/node.test.ts` without its [redis] run), each in its own process group, at most TEST_CONCURRENCY
//    (default 2) at a time, each killed after TEST_TIMEOUT seconds (default 180).
//    The endpoint files (ON_BOTH_BROKERS) run twice: as they are (in-memory broker) and with
//    SIGNALYARD_TEST_BROKER=redis (each yard on a Redis broker; see test/helpers.ts), listed as
//    `<file> [redis]`. `npm test -- redis` runs only the Redis runs (and files named so).
// 3. Prints each file's output whole, under a heading, when the file finishes.
// 4. Reads uvu's closing summary ("Total: N" / "Passed: N" / "Skipped: N") from each file;
//    failed = Total - Passed. A file that exits non-zero, times out or prints no summary
//    counts at least one failure.
// 5. Ends with exactly one line `N passed, N failed` (`, N skipped` when N > 0) and exits 1
//    if anything failed or nothing passed.
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
process.chdir(root);
const filters = process.argv.slice(2);
const timeoutMs = Number(process.env.TEST_TIMEOUT || 180) * 1000;
const concurrency = Math.max(1, Number(process.env.TEST_CONCURRENCY || 2));
const childEnv = { ...process.env, NODE_ENV: 'test', NO_COLOR: '1' };
delete childEnv.FORCE_COLOR; // kleur (uvu's colours) honours NO_COLOR unless FORCE_COLOR is set

function finish(passed, failed, skipped) {
  process.stdout.write(`${passed} passed, ${failed} failed${skipped > 0 ? `, ${skipped} skipped` : ''}\n`);
  process.exit(failed > 0 || passed === 0 ? 1 : 0);
}

// 1. Build.
const build = spawnSync(process.execPath, ['build.mjs', '--quiet'], { stdio: 'inherit' });
if (build.status !== 0) {
  console.log('\nnpm test: the build failed (node build.mjs), so no tests ran.');
  finish(0, 1, 0);
}

// 2. Find the test files.
// One name a line, sorted: branches that add a file merge without conflicts.
const ON_BOTH_BROKERS = [
  'bad-input',
  'burst',
  'echo',
  'hostile',
  'hostile-json',
  'integrity',
  'isolation',
  'kv',
  'kv-budget',
  'kv-names',
  'limits',
  'liveness',
  'memory',
  'mesh',
  'node',
  'node-messages',
  'peerjs-server',
  'peers',
  'peers-server',
  'relay',
  'relay-flow',
  'server-api',
  'signal-server',
  'snapshot',
  'y-webrtc-server',
]
  .map((name) => `test/${name}.test.ts`);
const files = readdirSync('test', { recursive: true })
  .map((f) => 'test/' + String(f).split('\\').join('/'))
  .filter((f) => f.endsWith('.test.ts') && !f.includes('/node_modules/'))
  .sort()
  .flatMap((f) => ON_BOTH_BROKERS.includes(f) ? [f, `${f} [redis]`] : [f])
  .filter((f) => filters.length === 0 || filters.some((s) => s.startsWith('=') ? f === s.slice(1) : f.includes(s)));
if (files.length === 0) {
  console.log(`npm test: no test files${filters.length ? ` matching ${filters.join(' or ')}` : ''} under test/`);
  finish(0, 0, 0);
}

// uvu (non-CLI mode) prints, after all suites of a file:  Total: N / Passed: N / Skipped: N.
const SUMMARY = /^\s*Total:\s+(\d+)\s*\n\s*Passed:\s+(\d+)\s*\n\s*Skipped:\s+(\d+)/gm;
const ANSI = /\x1b\[[0-9;]*m/g;

const running = new Set();
function killGroup(child, signal) {
  try { process.kill(-child.pid, signal); } catch { /* group already gone */ }
}
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    for (const c of running) killGroup(c, 'SIGKILL');
    process.exit(130);
  });
}

function runFile(file) {
  return new Promise((resolve) => {
    const started = Date.now();
    const [path, variant] = file.split(' ');
    const env = variant === '[redis]' ? { ...childEnv, SIGNALYARD_TEST_BROKER: 'redis' } : childEnv;
    // detached: own process group, so a timeout also kills whatever the test spawned.
    const child = spawn(process.execPath, ['--import', 'tsx', path], {
      env, stdio: ['ignore', 'pipe', 'pipe'], detached: true,
    });
    running.add(child);
    let out = '';
    let timedOut = false;
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child, 'SIGTERM');
      setTimeout(() => killGroup(child, 'SIGKILL'), 2000).unref();
    }, timeoutMs);
    let code = null, signal = null;
    const done = () => {
      if (!running.delete(child)) return;
      clearTimeout(timer);
      killGroup(child, 'SIGKILL'); // leftovers (servers, redis) the file started and left
      child.stdout.destroy();
      child.stderr.destroy();
      resolve(result(file, out, code, signal, timedOut, Date.now() - started));
    };
    child.on('error', (err) => {
      out += `\n[test runner] could not run the file: ${err.message}\n`;
      code = code ?? -1;
      done();
    });
    child.on('exit', (c, s) => {
      code = c;
      signal = s;
      // Let the pipes drain; a leftover grandchild may hold them open, so don't wait long.
      child.on('close', done);
      setTimeout(done, 1000);
    });
  });
}

function result(file, out, code, signal, timedOut, ms) {
  let passed = 0, failed = 0, skipped = 0, summaries = 0;
  for (const m of out.replace(ANSI, '').matchAll(SUMMARY)) {
    summaries++;
    passed += Number(m[2]);
    failed += Number(m[1]) - Number(m[2]);
    skipped += Number(m[3]);
  }
  const problems = [];
  if (timedOut) problems.push(`timed out after ${timeoutMs / 1000} s (TEST_TIMEOUT)`);
  else if (signal) problems.push(`killed by ${signal}`);
  else if (code !== 0) problems.push(`exit code ${code}`);
  if (summaries === 0) problems.push('no uvu summary printed');
  if (problems.length) failed = Math.max(failed, 1);
  return { file, out, passed, failed, skipped, problems, ms };
}

function report(r) {
  const status = r.failed ? 'FAIL' : 'ok';
  let text = `\n━━ ${r.file} ━━\n${r.out.replace(/\s+$/, '')}\n`;
  text += `── ${status} ${r.file}: ${r.passed} passed, ${r.failed} failed`;
  text += `${r.skipped ? `, ${r.skipped} skipped` : ''} (${(r.ms / 1000).toFixed(1)} s)`;
  text += `${r.problems.length ? ' — ' + r.problems.join('; ') : ''}\n`;
  process.stdout.write(text);
}

// 3. Run with a small pool.
const results = [];
let next = 0;
async function worker() {
  while (next < files.length) {
    const r = await runFile(files[next++]);
    report(r);
    results.push(r);
  }
}
await Promise.all(Array.from({ length: Math.min(concurrency, files.length) }, worker));

const sum = (k) => results.reduce((n, r) => n + r[k], 0);
const bad = results.filter((r) => r.failed).map((r) => r.file);
process.stdout.write(`\n${files.length} file(s)${bad.length ? `; failing: ${bad.join(', ')}` : ''}\n`);
finish(sum('passed'), sum('failed'), sum('skipped'));
