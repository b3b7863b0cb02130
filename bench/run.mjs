// bench/run.mjs — the benchmark runner (`npm run bench`, see bench/CONTRACT.md).
//
//   node bench/run.mjs [--quick] [--only a,b] [--no-write] [--no-build] [--merge]
//
// 1. Builds dist/ (`node build.mjs --quiet`): servers and clients load the package as users get it
//    (--no-build skips this, for callers that just built it).
// 2. Runs every bench/scenarios/*.mjs in file-name order (--only keeps the scenarios whose file
//    name or `name` contains one of the words), one at a time, each under a hard time bound.
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
import { spawnSync } from 'node:child_process'
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
const only = onlyAt >= 0 ? String(args[onlyAt + 1] ?? '').split(',').map((s) => s.trim()).filter(Boolean) : []
/** Hard bound per scenario: a scenario that overruns it is abandoned (and its servers stopped). */
const SCENARIO_LIMIT = (quick ? 45 : 420) * 1000

const err = (line) => process.stderr.write(`${line}\n`)

if (build) {
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
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => { void stopAll().finally(() => process.exit(130)) })
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

const results = []
const started = Date.now()
for (const file of files) {
  const mod = await import(pathToFileURL(`${root}bench/scenarios/${file}`).href)
  const name = String(mod.name ?? file.replace(/\.mjs$/, ''))
  if (only.length > 0 && !only.some((w) => file.includes(w) || name.includes(w))) continue
  const title = String(mod.title ?? name)
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
  log(`start${quick ? ' (quick)' : ''}`)
  const t0 = Date.now()
  const bound = deadline(SCENARIO_LIMIT)
  let result
  try {
    const out = await Promise.race([mod.run(ctx), bound])
    result = { file, name, title, ok: true, ...out }
  } catch (error) {
    log(`FAILED: ${error?.stack ?? error}`)
    result = { file, name, title, ok: false, error: String(error?.message ?? error), columns: [], rows: [], notes: [] }
  } finally {
    bound.cancel()
    await stopAll()
  }
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
