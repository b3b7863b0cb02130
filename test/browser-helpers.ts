// test/browser-helpers.ts — what the browser test files share: launching Debian's Chromium through
// playwright-core (never `npx playwright install`), cleanups that always run, a static HTTP server on
// 127.0.0.1 for the bundles and the pages in test/fixtures/browser/, and driving the in-page
// harness (harness.js, `window.h`) with bounded page.evaluate calls.
//
// Chromium missing is a FAILURE with a clear message, not a skip: CI (.ci/run) installs it.
// Each test file closes the browser with `test.after(closeBrowser)`.
import * as assert from 'uvu/assert'
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core'
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as esbuild from 'esbuild'
import { SignalChannel } from 'signalyard'
import { createServer, type Yard } from 'signalyard/server'
import { fetchText, freePort, sleep, startYard, until } from './helpers.js'

const root = fileURLToPath(new URL('..', import.meta.url))
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
// The flags from shared/MACHINE.md: headless, no sandbox (CI runs as root), nothing that phones out.
// The next two let WebRTC between pages use plain 127.0.0.1 host candidates (no mDNS names); the
// last two give getUserMedia a synthetic camera and microphone (a moving test pattern and a beep)
// without a permission prompt, for the media tests.
/** The repository root (example servers run from it). */
const ROOT = fileURLToPath(new URL('..', import.meta.url))

const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1',
  '--disable-features=WebRtcHideLocalIpsWithMdns', '--allow-loopback-in-peer-connection',
  '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream'
]

/** Registers a cleanup; cleanups run in reverse order (see `scoped`). */
export type Defer = (fn: () => unknown) => void

// ── the browser: launched once per test file, lazily, so that a missing Chromium fails every test loudly ──

let launching: Promise<Browser> | null = null

export function browser (): Promise<Browser> {
  launching ??= (async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(`Chromium not found at ${CHROMIUM}. The browser tests need a real Chromium: ` +
        'install Debian\'s package (apt-get install chromium; .ci/run does this on CI) or set CHROMIUM_PATH. ' +
        'Do not run `npx playwright install`.')
    }
    try {
      return await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 15_000 })
    } catch (err) {
      throw new Error(`Chromium at ${CHROMIUM} did not launch: ${(err as Error).message}`)
    }
  })()
  return launching
}

/** Close the browser if it was launched (register with `test.after(closeBrowser)`). */
export async function closeBrowser (): Promise<void> {
  const b = await launching?.catch(() => null)
  if (b) await withTimeout(b.close(), 10_000, 'browser.close()')
}

/** `promise`, or a rejection naming `what` after `ms` (page.evaluate has no timeout of its own). */
export function withTimeout<T> (promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/** Run `body` with a stack of cleanups that run in reverse, whatever happens. */
export async function scoped (body: (defer: Defer) => Promise<void>): Promise<void> {
  const stack: Array<() => unknown> = []
  try {
    await body((fn) => stack.push(fn))
  } finally {
    for (const fn of stack.reverse()) {
      try { await withTimeout(Promise.resolve().then(fn), 5000, 'cleanup') } catch (err) { console.error('cleanup failed:', err) }
    }
  }
}

/**
 * A fresh browser context, closed at the end. `rtcOrigin`: grant camera and microphone to that
 * origin, which Chromium requires (with --allow-loopback-in-peer-connection) before it gathers
 * 127.0.0.1 ICE candidates; without it WebRTC between pages on loopback finds no candidates.
 */
export async function newContext (defer: Defer, options: { rtcOrigin?: string } = {}): Promise<BrowserContext> {
  const context = await (await browser()).newContext()
  defer(() => context.close())
  context.setDefaultTimeout(5000)
  if (options.rtcOrigin !== undefined) await context.grantPermissions(['camera', 'microphone'], { origin: options.rtcOrigin })
  return context
}

// ── the static server ──

const FILES: Record<string, [file: string, type: string]> = {
  '/signalyard.js': ['dist/browser/signalyard.js', 'text/javascript'],
  '/signalyard.iife.js': ['dist/browser/signalyard.iife.js', 'text/javascript'],
  '/harness.js': ['test/fixtures/browser/harness.js', 'text/javascript'],
  '/esm.html': ['test/fixtures/browser/esm.html', 'text/html; charset=utf-8'],
  '/iife.html': ['test/fixtures/browser/iife.html', 'text/html; charset=utf-8']
}

function serveFiles (req: IncomingMessage, res: ServerResponse): void {
  const entry = FILES[new URL(req.url ?? '/', 'http://127.0.0.1').pathname]
  if (req.method !== 'GET' || entry === undefined) {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n')
    return
  }
  readFile(resolve(root, entry[0])).then(
    (body) => res.writeHead(200, { 'content-type': entry[1], 'cache-control': 'no-store' }).end(body),
    (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${entry[0]}: ${err.message}\n`)
  )
}

/** A static server on 127.0.0.1 and a free port; `origin` is 'http://127.0.0.1:<port>'. */
export async function startStatic (defer: Defer): Promise<{ server: Server, origin: string }> {
  for (const [file] of Object.values(FILES)) {
    assert.ok(existsSync(resolve(root, file)), `${file} exists (run node build.mjs first)`)
  }
  const server = createHttpServer(serveFiles)
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  defer(() => new Promise<void>((resolve) => {
    server.close(() => resolve())
    server.closeAllConnections()
  }))
  return { server, origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }
}

/** A yard on 127.0.0.1 (a free port unless `options` say otherwise), closed at the end. */
export async function yardOn (defer: Defer, options?: Parameters<typeof createServer>[0]): Promise<Yard> {
  const yard = options === undefined ? await startYard() : await createServer(options)
  defer(() => yard.close())
  return yard
}

/**
 * Open `url` in a new page of `context` and wait for the harness (page errors go in the failure).
 * `initScript` runs in the page before any of its own scripts.
 */
export async function openPage (context: BrowserContext, url: string, options: { initScript?: string } = {}): Promise<Page> {
  const page = await context.newPage()
  const problems: string[] = []
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`))
  page.on('console', (msg) => { if (msg.type() === 'error') problems.push(`console error: ${msg.text()}`) })
  if (options.initScript !== undefined) await page.addInitScript({ content: options.initScript })
  await page.goto(url)
  try {
    await page.waitForFunction(() => (window as any).h !== undefined, null, { timeout: 5000 })
  } catch (err) {
    throw new Error(`the harness did not load on ${url}: ${problems.join('; ') || (err as Error).message}`)
  }
  return page
}

// ── pages built from a fixture directory (test/fixtures/<lib>/page.html + page.ts) ──

/** A fixture page bundled for the browser: where the bundle is, what went into it. */
export interface BundledPage { dir: string, inputs: string[], bytes: number, ms: number, remove: () => Promise<void> }

/**
 * Bundle `fixtures`/page.ts (and what it imports from node_modules, unmodified) with esbuild into
 * a temporary directory; fails on any error or warning.
 */
export async function bundlePage (fixtures: string): Promise<BundledPage> {
  const dir = await mkdtemp(join(tmpdir(), 'signalyard-page-'))
  const started = performance.now()
  const result = await esbuild.build({
    entryPoints: [join(fixtures, 'page.ts')],
    outfile: join(dir, 'page.js'),
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'chrome110',
    logLevel: 'silent',
    metafile: true
  })
  assert.equal(result.errors, [], 'the page bundles')
  assert.equal(result.warnings, [], 'the page bundles without warnings')
  return {
    dir,
    inputs: Object.keys(result.metafile.inputs),
    bytes: Object.values(result.metafile.outputs).reduce((n, o) => n + o.bytes, 0),
    ms: Math.round(performance.now() - started),
    remove: async () => await rm(dir, { recursive: true, force: true })
  }
}

/** Serve a bundled fixture page on 127.0.0.1 (`/` its page.html, `/page.js` the bundle; /favicon.ico 204); its origin. */
export async function servePage (defer: Defer, fixtures: string, page: BundledPage): Promise<string> {
  const files: Record<string, [path: string, type: string]> = {
    '/': [join(fixtures, 'page.html'), 'text/html; charset=utf-8'],
    '/page.js': [join(page.dir, 'page.js'), 'text/javascript']
  }
  const server = createHttpServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://127.0.0.1').pathname
    const entry = files[path]
    // No icon, but no 404 either: it would show among the page's console errors.
    if (path === '/favicon.ico') return void res.writeHead(204).end()
    if (entry === undefined) return void res.writeHead(404).end()
    readFile(entry[0]).then(
      (body) => res.writeHead(200, { 'content-type': entry[1], 'cache-control': 'no-store' }).end(body),
      () => res.writeHead(500).end()
    )
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  defer(() => new Promise<void>((resolve) => { server.close(() => resolve()); server.closeAllConnections() }))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

// ── the example pages' servers (examples/chat, examples/video-call) ──

/** A running example page server (`examples/<name>/server.mjs`). */
export interface ExampleServer { origin: string, child: ChildProcess, stderr: () => string, exited: Promise<number | null> }

/**
 * `node examples/<name>/server.mjs` with PORT=<a free port> (SIGNALYARD_URL and HOST unset), as
 * its header says; killed at the end. Its one stdout line must be `<what> on <url> (open it in two tabs)`.
 */
export async function startExampleServer (defer: Defer, name: string, what: string): Promise<ExampleServer> {
  const port = await freePort()
  const env: NodeJS.ProcessEnv = { ...process.env, PORT: String(port) }
  delete env.SIGNALYARD_URL
  delete env.HOST
  const child = spawn(process.execPath, [`examples/${name}/server.mjs`], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d) => { stdout += d })
  child.stderr.on('data', (d) => { stderr += d })
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)))
  defer(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  await until(() => stdout.includes('\n') || child.exitCode !== null, 5000, `the ${what} server prints its URL`)
    .catch((err: Error) => { throw new Error(`${err.message}; stderr: ${stderr}`) })
  assert.is(stdout, `${what} on http://127.0.0.1:${port}/ (open it in two tabs)\n`, `stderr: ${stderr}`)
  return { origin: `http://127.0.0.1:${port}`, child, stderr: () => stderr, exited }
}

/**
 * An example page server at `origin` serves its page at / and /index.html (importing the bundle
 * from /signalyard.js and naming /favicon.svg, so no 404 shows in the console) and the icon at
 * /favicon.svg and /favicon.ico.
 */
export async function assertServesPageAndIcon (origin: string): Promise<void> {
  const page = await fetchText(`${origin}/`)
  assert.is(page.status, 200)
  assert.match(page.type, 'text/html')
  assert.match(page.body, "import { SignalChannel } from '/signalyard.js'", 'the page imports the bundle from /signalyard.js')
  assert.match(page.body, '<link rel="icon" href="/favicon.svg"', 'the page names its icon (no 404 in the console)')
  assert.is((await fetchText(`${origin}/index.html`)).body, page.body)
  const icon = await fetchText(`${origin}/favicon.svg`)
  assert.is(icon.status, 200)
  assert.match(icon.type, 'image/svg+xml')
  assert.match(icon.body, '<svg')
  assert.is((await fetchText(`${origin}/favicon.ico`)).status, 200, 'a browser asking for /favicon.ico gets the icon too')
}

/**
 * What every example page server promises besides its page: `/signalyard.js` is the built bundle,
 * an unknown path is a 404, and the yard answers WebSocket upgrades on the same port (an echo
 * stream in namespace `namespace` opens).
 */
export async function assertServesBundleAndYard (origin: string, namespace: string): Promise<void> {
  const bundle = await fetchText(`${origin}/signalyard.js`)
  assert.is(bundle.status, 200)
  assert.match(bundle.type, 'javascript')
  assert.ok(bundle.body === readFileSync(resolve(root, 'dist/browser/signalyard.js'), 'utf8'), '/signalyard.js is dist/browser/signalyard.js')
  assert.is((await fetchText(`${origin}/nothing-here`)).status, 404)
  const channel = SignalChannel(namespace, { url: origin.replace('http', 'ws') + '/' })
  try {
    await withTimeout(channel.echo().ready(), 3000, `an echo stream on the server at ${origin}`)
  } finally {
    channel.close()
  }
}

/** A second copy of example server `script` on the `port` the first holds exits 1 and says `message` on stderr. */
export async function assertPortTaken (defer: Defer, script: string, port: string, message: string): Promise<void> {
  const env: NodeJS.ProcessEnv = { ...process.env, PORT: port }
  delete env.SIGNALYARD_URL
  delete env.HOST
  const second = spawn(process.execPath, [script], { cwd: root, env, stdio: ['ignore', 'ignore', 'pipe'] })
  defer(() => { if (second.exitCode === null) second.kill('SIGKILL') })
  let stderr = ''
  second.stderr.on('data', (d) => { stderr += d })
  assert.is(await withTimeout(new Promise((resolve) => second.on('close', resolve)), 5000, `the second ${script} exits`), 1)
  assert.match(stderr, message)
}

// ── driving the page harness ──

/** A value as it crosses the page boundary (see harness.js). */
export interface Desc { t: string, v?: unknown, pad?: number, code?: string, message?: string }
export interface LogEntry { event: string, at: number, args: Desc[] }

export const str = (v: string): Desc => ({ t: 'string', v })
export const json = (v: unknown): Desc => ({ t: 'json', v })
export const bytes = (v: number[]): Desc => ({ t: 'bytes', v })

/** Call `window.h[fn](...args)` in the page, awaited, failing after `ms` (default 5 s). */
export function call<T = unknown> (page: Page, fn: string, ...args: unknown[]): Promise<T> {
  return callWithin<T>(5000, page, fn, ...args)
}

/** `call` with its own bound, for harness calls that wait for something slow. */
export function callWithin<T = unknown> (ms: number, page: Page, fn: string, ...args: unknown[]): Promise<T> {
  return withTimeout(page.evaluate(([fn, args]) => (window as any).h[fn](...args), [fn, args] as [string, unknown[]]), ms, `h.${fn}() in the page`)
}

/** Poll an event log in the page until `done(log)`, or fail after `ms` showing the log. */
export async function waitLog (page: Page, id: number, done: (log: LogEntry[]) => boolean, what: string, ms = 3000): Promise<LogEntry[]> {
  const deadline = Date.now() + ms
  let log: LogEntry[] = []
  for (;;) {
    // Fetch the log only when it grew: it may hold tens of thousands of byte values.
    if (await call<number>(page, 'logSize', id) !== log.length) log = await call<LogEntry[]>(page, 'log', id)
    if (done(log)) return log
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms; log so far: ${JSON.stringify(log).slice(0, 1500)}`)
    await sleep(15)
  }
}

export const eventsOf = (log: LogEntry[], event: string): Desc[][] => log.filter((e) => e.event === event).map((e) => e.args)
export const dataOf = (log: LogEntry[]): Desc[] => eventsOf(log, 'data').map((args) => args[0])

/** Close every channel the page opened (ignored when the page is already gone). */
export function closeChannels (page: Page): Promise<void> {
  return call<void>(page, 'closeAll').catch(() => {})
}
