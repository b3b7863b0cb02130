// bench/run.mjs — the benchmark runner (`npm run bench`, see bench/CONTRACT.md).
//
//   node bench/run.mjs [--quick] [--only a,b] [--no-write] [--no-build] [--merge]
//
// 1. Builds dist/ (`node build.mjs --quiet`): servers and clients load the package as users get it
//    (--no-build skips this, for callers that just built it).
// 2. Runs every bench/scenarios/*.mjs in file-name order (--only keeps the scenarios whose file
//    name or `name` contains one of the words), one at a time, each under a hard time bound and
//    in a process (and process group) of its own (`--scenario <file>`, internal): a scenario that
//    crashes natively fails alone, and what it left running is killed with its group.
// 3. Prints each scenario's table (markdown) to stdout as it finishes; progress goes to stderr.
// 4. Writes docs/BENCHMARKS.md and docs/bench.svg (bench/lib/report.mjs) unless --no-write.
//    --merge (with --only): keeps the documents of the last full run and replaces (or inserts)
//    only the sections and charts of the scenarios that ran, each section footer naming this
//    run's command, date and machine.
// Exits 1 when a scenario failed or timed out. Servers a scenario started are stopped when it
// ends, however it ends; the runner exits by itself.
//
// ctx handed to `run(ctx)`:
//   quick         boolean
//   startServer   (kind, options) → Promise<Server>   (bench/lib/servers.mjs; tracked and stopped
//                 by the runner if the scenario leaves one running)
//   log(line)     progress line on stderr, prefixed with the scenario's name
//   deadline(ms)  a Promise that rejects `ms` from now (race work against it), with
//                 `.at` (epoch ms), `.left()` (ms remaining, ≥ 0) and `.passed()`; its timer never
//                 keeps the process alive and it never counts as an unhandled rejection.
import { fork, spawnSync } from 'node:child_process'
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { startServer } from './lib/servers.mjs'
import { mergeMarkdown, mergeSvg, renderMarkdown, renderSvg, renderTable, machineInfo } from './lib/report.mjs'

const root = fileURLToPath(new URL('..', import.meta.url))
process.chdir(root)

const args = process.argv.slice(2)
const quick = args.includes('--quick')
const write = !args.includes('--no-write')
const build = !args.includes('--no-build')
const merge = args.includes('--merge')
const onlyAt = args.indexOf('--only')
/** `--scenario <file>`: this process is the child that runs that one scenario (see runIsolated). */
const scenarioAt = args.indexOf('--scenario')
const only = onlyAt >= 0 ? String(args[onlyAt + 1] ?? '').split(',').map((s) => s.trim()).filter(Boolean) : []
/** Hard bound per scenario: a scenario that overruns it is abandoned (and its servers stopped). */
const SCENARIO_LIMIT = (quick ? 45 : 420) * 1000

const err = (line) => process.stderr.write(`${line}\n`)

if (build && scenarioAt < 0) {
  const built = spawnSync(process.execPath, ['build.mjs', '--quiet'], { stdio: 'inherit' })
  if (built.status !== 0) {
    err('bench: the build failed (node build.mjs), nothing ran')
    process.exit(1)
  }
}

const files = readdirSync('bench/scenarios').filter((f) => f.endsWith('.mjs')).sort()

/** Servers started and not yet stopped, per scenario: stopped when the scenario ends. */
const live = new Set()
async function stopAll () {
  await Promise.allSettled([...live].map((s) => s.stop()))
  live.clear()
}
/** Scenario processes running (see runIsolated): their groups are killed if this run is interrupted. */
const running = new Set()
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    for (const child of running) { try { process.kill(-child.pid, 'SIGKILL') } catch {} }
    void stopAll().finally(() => process.exit(130))
  })
}

function deadline (ms) {
  const at = Date.now() + ms
  let timer
  const promise = new Promise((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`deadline of ${ms} ms passed`)), ms)
    timer.unref()
  })
  promise.catch(() => {})
  return Object.assign(promise, {
    at,
    left: () => Math.max(0, at - Date.now()),
    passed: () => Date.now() >= at,
    cancel: () => clearTimeout(timer)
  })
}

/**
 * Run one scenario in this process (the child side of `--scenario`): its result goes to the parent
 * over IPC. Servers it started are stopped however it ends.
 */
async function runHere (file) {
  const mod = await import(pathToFileURL(`${root}bench/scenarios/${file}`).href)
  const name = String(mod.name ?? file.replace(/\.mjs$/, ''))
  const log = (line) => err(`[${name}] ${line}`)
  const ctx = {
    quick,
    log,
    deadline,
    startServer: async (kind, options) => {
      const server = await startServer(kind, options)
      live.add(server)
      const stop = server.stop
      server.stop = () => { live.delete(server); return stop() }
      return server
    }
  }
  let result
  try {
    result = { ok: true, ...await mod.run(ctx) }
  } catch (error) {
    result = { ok: false, error: String(error?.message ?? error), stack: String(error?.stack ?? error) }
  } finally {
    await stopAll()
  }
  await new Promise((resolve) => process.send(result, resolve))
  process.exit(0)
}

/**
 * Run one scenario in a process of its own, in a process group of its own: a native crash there
 * (node-datachannel in the createNode scenario has aborted a whole run) fails that scenario only,
 * and whatever it left running (servers, a redis-server) is killed with its group.
 */
function runIsolated (file, log) {
  return new Promise((resolve) => {
    const argv = ['bench/run.mjs', '--scenario', file, ...(quick ? ['--quick'] : [])]
    const child = fork(argv[0], argv.slice(1), { cwd: root, detached: true, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    running.add(child)
    let result = null
    const limit = setTimeout(() => {
      log(`over the ${SCENARIO_LIMIT / 1000} s bound: stopped`)
      try { process.kill(-child.pid, 'SIGKILL') } catch {}
    }, SCENARIO_LIMIT)
    child.on('message', (message) => { result = message })
    child.on('exit', (code, signal) => {
      clearTimeout(limit)
      running.delete(child)
      try { process.kill(-child.pid, 'SIGKILL') } catch {} // (anything the scenario left running)
      resolve(result ?? { ok: false, error: `the scenario's process ended without a result (${signal ?? `exit code ${code}`})` })
    })
  })
}

if (scenarioAt >= 0) await runHere(args[scenarioAt + 1])

const results = []
const started = Date.now()
for (const file of files) {
  const mod = await import(pathToFileURL(`${root}bench/scenarios/${file}`).href)
  const name = String(mod.name ?? file.replace(/\.mjs$/, ''))
  if (only.length > 0 && !only.some((w) => file.includes(w) || name.includes(w))) continue
  const title = String(mod.title ?? name)
  const log = (line) => err(`[${name}] ${line}`)
  log(`start${quick ? ' (quick)' : ''}`)
  const t0 = Date.now()
  const out = await runIsolated(file, log)
  const result = out.ok ? { file, name, title, ...out } : { file, name, title, ok: false, error: out.error, columns: [], rows: [], notes: [] }
  if (!out.ok) log(`FAILED: ${out.stack ?? out.error}`)
  result.seconds = (Date.now() - t0) / 1000
  log(`done in ${result.seconds.toFixed(1)} s`)
  results.push(result)
  process.stdout.write(`\n## ${title}\n\n${result.ok ? renderTable(result) : `FAILED: ${result.error}`}\n`)
  if (result.ok && Array.isArray(result.notes) && result.notes.length > 0) {
    process.stdout.write(`\n${result.notes.map((n) => `- ${n}`).join('\n')}\n`)
  }
}

const total = (Date.now() - started) / 1000
err(`bench: ${results.length} scenario(s) in ${total.toFixed(1)} s`)
if (results.length === 0) {
  err(`bench: no scenario matched${only.length > 0 ? ` --only ${only.join(',')}` : ''}`)
  process.exit(1)
}

if (write) {
  const command = `npm run bench${args.filter((a) => a !== '--no-build').length > 0 ? ` -- ${args.filter((a) => a !== '--no-build').join(' ')}` : ''}`
  const meta = { command, quick, only, date: new Date(), seconds: total, machine: machineInfo() }
  const md = 'docs/BENCHMARKS.md'
  const svg = 'docs/bench.svg'
  writeFileSync(md, merge && existsSync(md) ? mergeMarkdown(readFileSync(md, 'utf8'), results, meta) : renderMarkdown(results, meta))
  writeFileSync(svg, merge && existsSync(svg) ? mergeSvg(readFileSync(svg, 'utf8'), results, meta) : renderSvg(results, meta))
  err('bench: wrote docs/BENCHMARKS.md and docs/bench.svg')
}
process.exit(results.every((r) => r.ok) ? 0 : 1)
