/**
 * The package as a user installs it: `npm pack`, install the tarball into an empty project (from the
 * npm cache, offline), then `npx signalyard` starts a server and a script in that project uses
 * `signalyard` and `signalyard/server` through the exports map.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const dir = mkdtempSync(join(tmpdir(), 'signalyard-pkg-'))

test.before(() => {
  // --ignore-scripts: pack the dist/ the test runner just built, without rebuilding it under the
  // feet of the test files running beside this one.
  const out = execFileSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], { cwd: root, encoding: 'utf8' })
  const tarball = join(dir, JSON.parse(out)[0].filename)
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'user-app', private: true, type: 'module' }))
  execFileSync('npm', ['install', '--offline', '--no-audit', '--no-fund', '--ignore-scripts', tarball], { cwd: dir, stdio: 'pipe' })
})

test.after(() => rmSync(dir, { recursive: true, force: true }))

test('the tarball ships the build, docs and bin, and no sources or tests', () => {
  const pkg = JSON.parse(readFileSync(join(dir, 'node_modules/signalyard/package.json'), 'utf8'))
  assert.equal(pkg.bin.signalyard, 'dist/cli.js')
  const files = execFileSync('find', ['.', '-type', 'f'], { cwd: join(dir, 'node_modules/signalyard'), encoding: 'utf8' })
  assert.ok(files.includes('./dist/browser/signalyard.js'))
  assert.ok(files.includes('./dist/cli.js'))
  assert.ok(files.includes('./docs/PROTOCOL.md'))
  assert.not.ok(files.includes('./src/'), 'sources are not shipped')
  assert.not.ok(files.includes('./test/'), 'tests are not shipped')
})

test('npx signalyard starts a server that prints its URL and answers /healthz', async () => {
  const child = spawn('npx', ['--offline', 'signalyard', '--port', '0', '--host', '127.0.0.1'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  try {
    const line = await new Promise<string>((resolve, reject) => {
      let out = ''
      const timer = setTimeout(() => reject(new Error(`no listening line within 10 s: ${out}`)), 10_000)
      child.stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString()
        const match = /^signalyard listening on (ws:\/\/127\.0\.0\.1:\d+\/)$/m.exec(out)
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

test.run()
