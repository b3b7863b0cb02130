// build.mjs — builds dist/ from src/ (esbuild for JavaScript, tsc for declarations).
//
//   node build.mjs           build and print output sizes
//   node build.mjs --quiet   build and print nothing unless something fails
//
// Outputs:
//   dist/node/index.js           src/node.ts          Node ESM; dependencies stay imports
//   dist/server/index.js         src/server/index.ts  Node ESM; dependencies stay imports
//   dist/cli.js                  src/cli.ts           Node ESM, shebang, mode 755
//   dist/chunks/*.js             code shared by the three above (one copy of each class,
//                                so `instanceof` works across 'signalyard' and 'signalyard/server')
//   dist/server/browser.js       src/server/browser.ts  what 'signalyard/server' is in a browser
//   dist/browser/signalyard.js   src/index.ts  browser ESM with eventemitter3 + nanoid inlined
//   dist/browser/signalyard.min.js    same, minified
//   dist/browser/signalyard.iife.js   same, minified IIFE exposing the global `signalyard`
//   dist/types/src/**.d.ts       declarations (tsconfig.build.json)
// The browser bundles must never contain the `ws` package: the build fails if they do.
import * as esbuild from 'esbuild';
import { spawn } from 'node:child_process';
import { chmod, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

process.chdir(fileURLToPath(new URL('.', import.meta.url)));
const quiet = process.argv.includes('--quiet');
const started = Date.now();
const common = { bundle: true, format: 'esm', metafile: true, logLevel: quiet ? 'error' : 'warning' };

// Declarations: tsc runs alongside esbuild. It exits non-zero on type errors in src.
function declarations() {
  return new Promise((resolve, reject) => {
    const tsc = spawn(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    tsc.stdout.on('data', (d) => (out += d));
    tsc.stderr.on('data', (d) => (out += d));
    tsc.on('error', reject);
    tsc.on('close', (code) => (code === 0 ? resolve([]) : reject(new Error(`tsc -p tsconfig.build.json failed (exit ${code}):\n${out}`))));
  });
}

// Node entries, built together so shared modules land in one chunk.
async function nodeEntries() {
  const r = await esbuild.build({
    ...common,
    platform: 'node',
    target: 'node20',
    packages: 'external',
    splitting: true,
    outdir: 'dist',
    chunkNames: 'chunks/[name]-[hash]',
    entryPoints: [
      { in: 'src/node.ts', out: 'node/index' },
      { in: 'src/server/index.ts', out: 'server/index' },
      { in: 'src/cli.ts', out: 'cli' },
    ],
  });
  // Shebang only on the CLI (an esbuild banner would go on every chunk too).
  const cli = await readFile('dist/cli.js', 'utf8');
  if (!cli.startsWith('#!')) await writeFile('dist/cli.js', '#!/usr/bin/env node\n' + cli);
  await chmod('dist/cli.js', 0o755);
  return [r];
}

// eventemitter3 is CommonJS. Bundled as it is, every `class … extends EventEmitter` of a browser
// bundle reads `import_eventemitter3.default`, a property access that an app's bundler cannot prove
// free of side effects (it could be a getter), so the app would keep every class of the file, used
// or not; and esbuild's CommonJS wrappers cost another 0.2 kB gzipped. The browser bundles get its
// source as an ES module instead: the same code, with `function EventEmitter` exported, so the
// classes extend a plain name and a bundler drops those an app does not use (test/bundle-size.test.ts).
const require = createRequire(import.meta.url);
const eventEmitterAsModule = {
  name: 'eventemitter3-as-module',
  setup(build) {
    build.onResolve({ filter: /^eventemitter3$/ }, () => ({ path: require.resolve('eventemitter3'), namespace: 'eventemitter3-as-module' }));
    build.onLoad({ filter: /.*/, namespace: 'eventemitter3-as-module' }, async ({ path }) => {
      const source = await readFile(path, 'utf8');
      if (!/^function EventEmitter\(/m.test(source)) throw new Error(`${path} no longer declares function EventEmitter: see eventEmitterAsModule in build.mjs`);
      // `module` is declared so that its closing `if (typeof module …) module.exports = …` does nothing.
      return { contents: `const module = undefined;\n${source}\nexport { EventEmitter };\nexport default EventEmitter;\n`, loader: 'js' };
    });
  },
};

const WS_IMPORT = /\bfrom\s*["']ws["']|\bimport\s*\(?\s*["']ws["']|\brequire\s*\(\s*["']ws["']\s*\)/;

// Browser bundles of src/index.ts; fail if the ws package got in.
async function browserBundles() {
  const variants = [
    { outfile: 'dist/browser/signalyard.js' },
    { outfile: 'dist/browser/signalyard.min.js', minify: true },
    { outfile: 'dist/browser/signalyard.iife.js', minify: true, format: 'iife', globalName: 'signalyard' },
  ];
  // The plain bundle first: if src/index.ts does not bundle, esbuild says so once, not thrice.
  const build = (v) => esbuild.build({ ...common, platform: 'browser', target: 'es2022', entryPoints: ['src/index.ts'], plugins: [eventEmitterAsModule], ...v });
  const results = [await build(variants[0]), ...(await Promise.all(variants.slice(1).map(build)))];
  for (const [i, r] of results.entries()) {
    const wsInputs = Object.keys(r.metafile.inputs).filter((p) => /(^|\/)node_modules\/ws\//.test(p));
    const text = await readFile(variants[i].outfile, 'utf8');
    if (wsInputs.length || WS_IMPORT.test(text)) {
      const why = wsInputs.length ? `it bundles ${wsInputs.join(', ')}` : 'it imports "ws"';
      throw new Error(`${variants[i].outfile}: the browser bundle must not contain the ws package, but ${why}. ` +
        'Something imported from src/index.ts reaches `ws`; only src/node.ts may import it.');
    }
  }
  const server = await esbuild.build({ ...common, platform: 'browser', target: 'es2022', entryPoints: ['src/server/browser.ts'], outfile: 'dist/server/browser.js' });
  return [...results, server];
}

// dist/ is written over in place, never deleted first: a test run beside this build (another
// terminal, another helper) keeps finding its modules. What the build no longer makes is pruned after.
const settled = await Promise.allSettled([nodeEntries(), browserBundles(), declarations()]);
const failures = settled.filter((s) => s.status === 'rejected').map((s) => s.reason);
if (failures.length) {
  for (const e of failures) {
    // esbuild has already printed its own errors; its exception message repeats them.
    if (e?.errors) console.error(`build.mjs: esbuild reported ${e.errors.length} error(s) (above)`);
    else console.error(`build.mjs: ${e?.message ?? e}`);
  }
  console.error('build.mjs: build FAILED');
  process.exit(1);
}

// Prune files this build did not make: stale chunks, and declarations of deleted sources.
const made = new Set(settled.flatMap((s) => s.value).flatMap((r) => Object.keys(r.metafile.outputs)));
for (const entry of await readdir('dist', { recursive: true, withFileTypes: true })) {
  if (!entry.isFile()) continue;
  const file = `${entry.parentPath ?? entry.path}/${entry.name}`.replace(/^\.\//, '');
  const source = file.startsWith('dist/types/') ? file.slice('dist/types/'.length).replace(/\.d\.ts$/, '.ts') : null;
  const keep = source !== null ? existsSync(source) : made.has(file);
  if (!keep) await rm(file, { force: true });
}

if (!quiet) {
  const outputs = settled.flatMap((s) => s.value).flatMap((r) => Object.entries(r.metafile.outputs));
  for (const [file, { bytes }] of outputs.sort(([a], [b]) => a.localeCompare(b))) {
    const gz = file.startsWith('dist/browser/') ? `  (${(gzipSync(await readFile(file)).length / 1024).toFixed(1)} kB gzip)` : '';
    console.log(`${file.padEnd(44)} ${(bytes / 1024).toFixed(1).padStart(7)} kB${gz}`);
  }
  console.log(`dist/types/src/**/*.d.ts  (declarations)\nbuilt in ${Date.now() - started} ms`);
}
