// bench/lib/servers.mjs — every server under test runs in a process of its own, never in the load
// generator's: `startServer(kind, options)` spawns `node --expose-gc bench/servers/<kind>.mjs <json>`
// and talks to it over IPC (see bench/CONTRACT.md): 'ready' with the port, then `stats` / `gc`
// requests answered with process.cpuUsage() and process.memoryUsage(), and `stop`.
// SIGNALYARD_BENCH_PROF=1 starts servers with --cpu-prof (profiles land in bench/profiles/).
import { fork } from 'node:child_process'
import { mkdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const here = fileURLToPath(new URL('..', import.meta.url))
const READY_TIMEOUT = 15_000
const REQUEST_TIMEOUT = 10_000

/**
 * @typedef {{ cpu: { user: number, system: number }, mem: NodeJS.MemoryUsage, extra?: unknown }} ServerStats
 * @typedef {{ kind: string, url: string, port: number, pid: number,
 *   stats: () => Promise<ServerStats>, gc: () => Promise<ServerStats>,
 *   request: (cmd: string, args?: object) => Promise<any>, stop: () => Promise<void> }} Server
 */

/** @returns {Promise<Server>} */
export function startServer (kind, options = {}) {
  const execArgv = ['--expose-gc']
  if (process.env.SIGNALYARD_BENCH_PROF === '1') {
    const dir = `${here}profiles`
    mkdirSync(dir, { recursive: true })
    execArgv.push('--cpu-prof', `--cpu-prof-dir=${dir}`, `--cpu-prof-name=${kind}-${Date.now()}.cpuprofile`)
  }
  const child = fork(`${here}servers/${kind}.mjs`, [JSON.stringify(options)], { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  let nextId = 1
  const pending = new Map()
  let exited = false
  child.on('message', (msg) => {
    const p = pending.get(msg?.id)
    if (p !== undefined) { pending.delete(msg.id); clearTimeout(p.timer); p.resolve(msg) }
  })
  const exit = new Promise((resolve) => child.once('exit', () => {
    exited = true
    for (const p of pending.values()) { clearTimeout(p.timer); p.reject(new Error(`${kind} server exited`)) }
    pending.clear()
    resolve()
  }))
  const request = (cmd, args = {}) => new Promise((resolve, reject) => {
    if (exited) return reject(new Error(`${kind} server is not running`))
    const id = nextId++
    const timer = setTimeout(() => { pending.delete(id); reject(new Error(`${kind} server: no answer to ${cmd}`)) }, REQUEST_TIMEOUT)
    pending.set(id, { resolve, reject, timer })
    child.send({ id, cmd, ...args })
  })
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`${kind} server not ready in ${READY_TIMEOUT} ms`)) }, READY_TIMEOUT)
    const onReady = (msg) => {
      if (msg?.type !== 'ready') return
      child.off('message', onReady)
      clearTimeout(timer)
      resolve({
        kind,
        url: msg.url,
        port: msg.port,
        pid: child.pid,
        request,
        stats: () => request('stats'),
        gc: () => request('gc'),
        stop: async () => {
          if (!exited) child.send({ cmd: 'stop' })
          const killer = setTimeout(() => child.kill('SIGKILL'), 5000)
          await exit
          clearTimeout(killer)
        }
      })
    }
    child.on('message', onReady)
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`${kind} server exited (${code}) before it was ready`)) })
  })
}

/**
 * The server side of the contract, for bench/servers/*.mjs: answer stats/gc/stop over IPC.
 * `extra()` adds server-specific figures to every stats answer; `stop()` closes the server.
 */
export function serveControl ({ port, url, extra = () => undefined, stop }) {
  const answer = (id) => process.send({ id, cpu: process.cpuUsage(), mem: process.memoryUsage(), extra: extra() })
  const shutdown = async () => {
    try { await stop() } finally { process.exit(0) }
  }
  process.on('message', (msg) => {
    if (msg?.cmd === 'stats') return answer(msg.id)
    if (msg?.cmd === 'gc') { globalThis.gc?.(); globalThis.gc?.(); return answer(msg.id) }
    if (msg?.cmd === 'stop') return void shutdown()
  })
  process.on('disconnect', () => void shutdown())
  process.send({ type: 'ready', port, url })
}

/** The options a server script was started with. */
export function serverOptions () {
  return JSON.parse(process.argv[2] ?? '{}')
}
