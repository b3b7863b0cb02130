/**
 * A real redis-server for tests: spawned on a free 127.0.0.1 port with persistence off, waited for
 * ("Ready to accept connections"), and killed after. `restart()` kills it and starts a new, empty
 * one on the same port (what a Redis restart without persistence looks like to the brokers).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createConnection } from 'node:net'
import { freePort } from './helpers.js'

export interface TestRedis {
  url: string
  port: number
  /** Kill the server and start an empty one on the same port. `downMs`: how long it stays down. */
  restart: (downMs?: number) => Promise<void>
  /** Run one command (inline protocol) and return the raw reply text. */
  command: (...args: string[]) => Promise<string>
  /** The keys matching a pattern (KEYS; fine for tests). */
  keys: (pattern?: string) => Promise<string[]>
  /** The pub/sub channels with a subscriber, matching a pattern (PUBSUB CHANNELS). */
  channels: (pattern?: string) => Promise<string[]>
  stop: () => Promise<void>
}

// A redis-server left behind by a test process that died is killed with it.
const children = new Set<ChildProcess>()
process.once('exit', () => { for (const child of children) child.kill('SIGKILL') })

function launch (port: number): Promise<ChildProcess> {
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'ignore'] })
  return new Promise((resolve, reject) => {
    let out = ''
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`redis-server not ready within 5 s: ${out}`)) }, 5000)
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString()
      if (out.includes('Ready to accept connections')) {
        clearTimeout(timer)
        // Nothing more to read: let the test process exit even if a test forgets to stop it.
        child.stdout?.destroy()
        child.unref()
        children.add(child)
        child.once('exit', () => children.delete(child))
        resolve(child)
      }
    })
    child.once('error', (err) => { clearTimeout(timer); reject(err) })
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`redis-server exited with ${String(code)}: ${out}`)) })
  })
}

const stopChild = (child: ChildProcess): Promise<void> => new Promise((resolve) => {
  if (child.exitCode !== null || child.signalCode !== null) return resolve()
  child.once('exit', () => resolve())
  child.ref() // (unref'd once ready) wait for it to be gone
  child.kill('SIGKILL')
})

/** The strings of a RESP array reply (`*N\r\n$len\r\nstr\r\n… +OK\r\n`), sorted. */
function list (reply: string): string[] {
  const lines = reply.split('\r\n')
  const n = Number(lines[0].slice(1))
  const out: string[] = []
  for (let i = 0; i < n; i++) out.push(lines[2 + i * 2])
  return out.sort()
}

/** Start a redis-server for this test file. */
export async function startRedis (): Promise<TestRedis> {
  const port = await freePort()
  let child = await launch(port)
  const command = (...args: string[]): Promise<string> => new Promise((resolve, reject) => {
    const socket = createConnection(port, '127.0.0.1')
    let reply = ''
    socket.on('data', (d) => { reply += d.toString() })
    socket.on('end', () => resolve(reply))
    socket.on('error', reject)
    // RESP array, then QUIT so the server closes the connection after answering
    const encode = (parts: string[]): string => `*${parts.length}\r\n${parts.map((p) => `$${Buffer.byteLength(p)}\r\n${p}\r\n`).join('')}`
    socket.write(encode(args) + encode(['QUIT']))
  })
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    command,
    keys: async (pattern = '*') => list(await command('KEYS', pattern)),
    channels: async (pattern = '*') => list(await command('PUBSUB', 'CHANNELS', pattern)),
    async restart (downMs = 0) {
      await stopChild(child)
      if (downMs > 0) await new Promise((resolve) => setTimeout(resolve, downMs))
      child = await launch(port)
    },
    stop: () => stopChild(child)
  }
}
