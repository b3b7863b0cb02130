/**
 * The package as a user installs it: `npm pack`, install the tarball into an empty project, then
 * `npx signalyard` starts a server and a script in that project uses `signalyard` and
 * `signalyard/server` through the exports map. Also what the tarball holds (the build, the user
 * docs and the LICENSE; no sources, tests or engineering docs), the links npm shows, and that a
 * tarball packed in the checkout is ignored by git.
 *
 * Nothing here depends on the npm cache or the network: the install runs offline against a cache
 * of its own (empty), with the package's production dependencies packed from this project's own
 * node_modules (the versions package-lock.json pins) and installed beside it. A failing step fails
 * every test with the command and its whole output.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const dir = mkdtempSync(join(tmpdir(), 'signalyard-pkg-'))
/** npm's cache for this test alone: whatever the user's cache holds (or lacks) plays no part. */
const npmEnv = { ...process.env, npm_config_cache: join(dir, '.npm-cache'), npm_config_offline: 'true', npm_config_update_notifier: 'false' }

/** Run a command; on failure throw with the command line and everything it printed. */
function run (cmd: string, args: string[], cwd: string): string {
  try {
    return execFileSync(cmd, args, { cwd, env: npmEnv, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 })
  } catch (err) {
    const e = err as { status?: number, signal?: string, stdout?: string, stderr?: string, message: string }
    throw new Error(`setup failed: \`${cmd} ${args.join(' ')}\` in ${cwd} (exit ${e.status ?? e.signal ?? '?'})\n${e.stdout ?? ''}${e.stderr ?? ''}${e.stdout || e.stderr ? '' : e.message}`)
  }
}

/** The production dependencies package-lock.json installs (top level), as paths under node_modules. */
function productionDependencies (): string[] {
  const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean, devOptional?: boolean, optional?: boolean }> }
  const prod = Object.entries(lock.packages).filter(([path, p]) => path.startsWith('node_modules/') && p.dev !== true && p.devOptional !== true && p.optional !== true).map(([path]) => path)
  const nested = prod.filter((path) => path.lastIndexOf('node_modules/') > 0)
  if (nested.length > 0) throw new Error(`setup: nested production dependencies (${nested.join(', ')}) cannot be installed side by side; pack them another way`)
  return prod
}

let setupError: Error | null = null

test.before(() => {
  try {
    // --ignore-scripts: pack the dist/ the test runner just built, without rebuilding it under the
    // feet of the test files running beside this one. One `npm pack` for the package and its deps.
    const deps = productionDependencies()
    const out = run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir, '.', ...deps.map((d) => `./${d}`)], root)
    const tarballs = (JSON.parse(out) as Array<{ filename: string }>).map((p) => `./${p.filename}`)
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'user-app', private: true, type: 'module' }))
    run('npm', ['install', '--offline', '--no-audit', '--no-fund', '--ignore-scripts', ...tarballs], dir)
  } catch (err) {
    setupError = err as Error
  }
})

/** Every test starts here: a failed setup fails it with the reason, not with a missing file. */
function installed (): void {
  if (setupError !== null) throw setupError
}

test.after(() => rmSync(dir, { recursive: true, force: true }))

test('the tarball ships the build, the user docs, the LICENSE and bin, and no sources, tests or engineering docs', () => {
  installed()
  const pkg = JSON.parse(readFileSync(join(dir, 'node_modules/signalyard/package.json'), 'utf8'))
  assert.equal(pkg.bin.signalyard, 'dist/cli.js')
  const files = execFileSync('find', ['.', '-type', 'f'], { cwd: join(dir, 'node_modules/signalyard'), encoding: 'utf8' }).split('\n')
  for (const shipped of ['./dist/browser/signalyard.js', './dist/cli.js', './README.md', './LICENSE', './docs/PROTOCOL.md', './docs/TURN.md', './docs/REDIS.md']) {
    assert.ok(files.includes(shipped), `${shipped} is shipped`)
  }
  assert.is(files.filter((f) => f.startsWith('./src/')).length, 0, 'sources are not shipped')
  assert.is(files.filter((f) => f.startsWith('./test/')).length, 0, 'tests are not shipped')
  // Benchmarks, the NAT lab and the architecture tour are for people working on signalyard; the
  // README links to them in the repository.
  const docs = files.filter((f) => f.startsWith('./docs/')).sort()
  assert.equal(docs, ['./docs/PROTOCOL.md', './docs/REDIS.md', './docs/TURN.md'], 'only the user and operator docs are shipped')
  const license = readFileSync(join(dir, 'node_modules/signalyard/LICENSE'), 'utf8')
  assert.match(license, /^MIT License\n\nCopyright \(c\) 2026 signalyard contributors\n/)
  assert.is(pkg.license, 'MIT', 'package.json names the license the LICENSE file grants')
})

test('package.json tells npm where the repository, the homepage and the issue tracker are', () => {
  installed()
  const pkg = JSON.parse(readFileSync(join(dir, 'node_modules/signalyard/package.json'), 'utf8'))
  assert.equal(pkg.repository, { type: 'git', url: 'git+https://github.com/signalyard/signalyard.git' })
  assert.is(pkg.homepage, 'https://github.com/signalyard/signalyard#readme')
  assert.equal(pkg.bugs, { url: 'https://github.com/signalyard/signalyard/issues' })
})

test('a tarball left by `npm pack` in the checkout is ignored by git', () => {
  // `git check-ignore` exits 0 when the path is ignored, 1 when it is not; the file need not exist.
  const check = spawnSync('git', ['check-ignore', '--quiet', '--no-index', 'signalyard-0.1.0.tgz'], { cwd: root })
  assert.is(check.status, 0, `git check-ignore: exit ${String(check.status)} ${check.stderr?.toString() ?? ''}`)
})

test('the installed bin prints the package version', () => {
  installed()
  const pkg = JSON.parse(readFileSync(join(dir, 'node_modules/signalyard/package.json'), 'utf8'))
  const out = execFileSync('npx', ['--offline', 'signalyard', '--version'], { cwd: dir, env: npmEnv, encoding: 'utf8', timeout: 10_000 })
  assert.is(out, `${String(pkg.version)}\n`)
})

test('npx signalyard starts a server that prints its URL and answers /healthz', async () => {
  installed()
  const child = spawn('npx', ['--offline', 'signalyard', '--port', '0', '--host', '127.0.0.1'], { cwd: dir, env: npmEnv, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  try {
    const line = await new Promise<string>((resolve, reject) => {
      let out = ''
      const timer = setTimeout(() => reject(new Error(`no listening line within 10 s: ${out}`)), 10_000)
      child.stderr.on('data', (chunk: Buffer) => { out += chunk.toString() })
      child.stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString()
        // e.g. `signalyard listening on ws://127.0.0.1:3000/ (bound to 127.0.0.1:3000)`
        const match = /^signalyard listening on (ws:\/\/127\.0\.0\.1:\d+\/)(?: .*)?$/m.exec(out)
        if (match !== null) { clearTimeout(timer); resolve(match[1]) }
      })
      child.once('exit', (code) => reject(new Error(`exited with ${code}: ${out}`)))
    })
    const health = await (await fetch(line.replace('ws://', 'http://') + 'healthz')).json()
    assert.equal(health.status, 'ok')
  } finally {
    // npx itself does not forward signals; the graceful stop is tested on the bin in cli.test.ts.
    try { process.kill(-(child.pid as number), 'SIGKILL') } catch {}
  }
})

test('a user script imports the client and the server by package name', () => {
  installed()
  const script = `
    import { SignalChannel, SignalyardError } from 'signalyard'
    import { createServer } from 'signalyard/server'
    const yard = await createServer({ port: 0, host: '127.0.0.1' })
    const channel = SignalChannel('pkg', yard.url)
    const echo = channel.echo()
    const got = new Promise((resolve) => echo.on('data', resolve))
    echo.send('through the package')
    console.log(await got, typeof SignalyardError)
    channel.close()
    await yard.close()
  `
  writeFileSync(join(dir, 'use.mjs'), script)
  const out = execFileSync('node', ['use.mjs'], { cwd: dir, encoding: 'utf8', timeout: 10_000 })
  assert.equal(out.trim(), 'through the package function')
})

test('signalyard/min and signalyard/iife resolve to the browser bundles, from import and from require', () => {
  installed()
  const script = `
    import { createRequire } from 'node:module'
    import { readFileSync } from 'node:fs'
    import { fileURLToPath } from 'node:url'
    const require = createRequire(import.meta.url)
    const min = await import('signalyard/min')
    const iifeFile = fileURLToPath(import.meta.resolve('signalyard/iife'))
    const lib = new Function(readFileSync(iifeFile, 'utf8') + '\\nreturn signalyard')()
    console.log(JSON.stringify({
      resolved: [import.meta.resolve('signalyard/min'), iifeFile, require.resolve('signalyard/min'), require.resolve('signalyard/iife')],
      min: [typeof min.createChannel, typeof min.openEcho, typeof min.SignalChannel],
      iife: [typeof lib.createChannel, typeof lib.SignalChannel]
    }))
  `
  writeFileSync(join(dir, 'subpaths.mjs'), script)
  const out = JSON.parse(execFileSync('node', ['subpaths.mjs'], { cwd: dir, encoding: 'utf8', timeout: 10_000 })) as { resolved: string[], min: string[], iife: string[] }
  const [importMin, iife, requireMin, requireIife] = out.resolved
  assert.ok(importMin.endsWith('/node_modules/signalyard/dist/browser/signalyard.min.js'), importMin)
  assert.ok(requireMin.endsWith('/node_modules/signalyard/dist/browser/signalyard.min.js'), requireMin)
  assert.ok(iife.endsWith('/node_modules/signalyard/dist/browser/signalyard.iife.js'), iife)
  assert.is(requireIife, iife)
  assert.equal(out.min, ['function', 'function', 'function'], 'the minified module exports the client')
  assert.equal(out.iife, ['function', 'function'], 'the IIFE defines the global signalyard')
})

test.run()
