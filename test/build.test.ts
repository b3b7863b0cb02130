// test/build.test.ts — checks the built package (dist/) as a user gets it: browser bundles
// without `ws`, the exports map, the Node-only guard for 'signalyard/server' in browsers,
// the CLI's shebang and mode, and that the package resolves by name (self-reference).
// `npm test` builds first; run alone, run `npm run build` before.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const read = (rel: string) => readFileSync(resolve(root, rel), 'utf8');
const pkg = JSON.parse(read('package.json')) as {
  bin: Record<string, string>;
  exports: Record<string, string | Record<string, string>>;
};

const BROWSER_BUNDLES = ['dist/browser/signalyard.js', 'dist/browser/signalyard.min.js', 'dist/browser/signalyard.iife.js'];
const WS_IMPORT = /\bfrom\s*["']ws["']|\bimport\s*\(?\s*["']ws["']|\brequire\s*\(\s*["']ws["']\s*\)/;

test('browser bundles exist and contain nothing from the ws package', () => {
  for (const file of BROWSER_BUNDLES) {
    assert.ok(existsSync(resolve(root, file)), `${file} exists`);
    const code = read(file);
    assert.not.ok(code.includes('node_modules/ws'), `${file} has no code from node_modules/ws`);
    assert.not.ok(WS_IMPORT.test(code), `${file} does not import "ws"`);
  }
});

test('browser bundles load and expose the client API', async () => {
  const esm = await import(pathToFileURL(resolve(root, 'dist/browser/signalyard.js')).href);
  assert.type(esm.SignalChannel, 'function');
  // The IIFE declares `var signalyard`; evaluate it in a function scope and return that.
  const iife = new Function(`${read('dist/browser/signalyard.iife.js')}\nreturn signalyard;`)();
  assert.type(iife.SignalChannel, 'function');
});

test('exports map: "types" first in every entry, and every target exists', () => {
  for (const [key, value] of Object.entries(pkg.exports)) {
    if (typeof value === 'string') {
      assert.ok(existsSync(resolve(root, value)), `${key} -> ${value} exists`);
      continue;
    }
    assert.is(Object.keys(value)[0], 'types', `"types" is the first condition of ${key}`);
    for (const [cond, target] of Object.entries(value)) {
      assert.ok(existsSync(resolve(root, target)), `${key} [${cond}] -> ${target} exists`);
    }
  }
});

test('signalyard/server under the browser condition throws a Node-only error at import', async () => {
  const server = pkg.exports['./server'];
  assert.type(server, 'object');
  const target = (server as Record<string, string>).browser;
  assert.type(target, 'string', './server has a "browser" condition');
  let error: unknown = null;
  try {
    await import(pathToFileURL(resolve(root, target)).href);
  } catch (err) {
    error = err;
  }
  assert.instance(error, Error, 'importing it rejects with an Error');
  assert.match((error as Error).message, 'Node');
});

test('dist/cli.js starts with a shebang and is executable', () => {
  const cli = pkg.bin.signalyard;
  assert.is(cli, 'dist/cli.js');
  assert.ok(read(cli).startsWith('#!/usr/bin/env node\n'), 'shebang on line 1');
  assert.ok((statSync(resolve(root, cli)).mode & 0o111) !== 0, 'executable bit set');
});

test("'signalyard' resolves by name to the Node build and exposes the client", async () => {
  assert.ok(import.meta.resolve('signalyard').endsWith('/dist/node/index.js'));
  const mod = await import('signalyard');
  assert.type(mod.SignalChannel, 'function');
  assert.type(mod.SignalyardError, 'function');
});

test("'signalyard/server' resolves by name to the Node build and exposes createServer", async () => {
  assert.ok(import.meta.resolve('signalyard/server').endsWith('/dist/server/index.js'));
  const mod = await import('signalyard/server');
  assert.type(mod.createServer, 'function');
});

test.run();
