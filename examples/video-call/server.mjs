// examples/video-call — a browser video call: camera and microphone over WebRTC peer connections,
// signalled through signalyard (presence to find each other, createNode to connect).
//
// One command serves everything on one port: the page (index.html), its icon, the browser bundle
// of the client (at /signalyard.js, from the package's dist/browser/signalyard.js) and the
// signalyard server itself (WebSocket upgrades on the same port, so the page connects to its own
// origin).
//
// Run it from the repository root (after `npm install`, which builds dist/):
//
//   node examples/video-call/server.mjs            # http://127.0.0.1:8080/
//   PORT=3001 node examples/video-call/server.mjs  # another port (PORT=0 picks a free one)
//
// then open the printed URL in two tabs, allow the camera and microphone, and press Join in each:
// the tabs see and hear each other. Up to about four people per room work (a small mesh: every
// pair holds its own peer connection). ?room=name picks a separate room (default "lobby");
// ?transport=relay forces the server relay, which carries no media: the page then says so.
//
// Two machines: browsers give the camera only to secure pages (https://, or http://127.0.0.1 and
// localhost), so plain http://<this machine's LAN address> gets no camera. Either forward the port
// from the other machine (`ssh -L 8080:127.0.0.1:8080 this-machine`, then open
// http://127.0.0.1:8080/ there: the media still flows directly between the two machines), or set
// HOST=0.0.0.0 to listen on every interface and put an HTTPS reverse proxy in front.
//
// It listens on 127.0.0.1 only unless HOST says otherwise. Ctrl-C (SIGINT) or SIGTERM stops it.
import { readFile } from 'node:fs/promises'
import { createServer as createHttpServer } from 'node:http'
import { fileURLToPath } from 'node:url'
import { createServer } from 'signalyard/server'

const port = process.env.PORT === undefined || process.env.PORT === '' ? 8080 : Number(process.env.PORT)
if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`PORT must be a port number, not ${JSON.stringify(process.env.PORT)}`)
const host = process.env.HOST || '127.0.0.1'

// The browser bundle of the installed package ('signalyard/package.json' is exported for this).
const bundle = fileURLToPath(new URL('dist/browser/signalyard.js', import.meta.resolve('signalyard/package.json')))
const here = (file) => fileURLToPath(new URL(file, import.meta.url))
const FILES = {
  '/': [here('index.html'), 'text/html; charset=utf-8'],
  '/index.html': [here('index.html'), 'text/html; charset=utf-8'],
  '/favicon.svg': [here('favicon.svg'), 'image/svg+xml'],
  // Some browsers ask for /favicon.ico whatever the page links: the same icon.
  '/favicon.ico': [here('favicon.svg'), 'image/svg+xml'],
  '/signalyard.js': [bundle, 'text/javascript; charset=utf-8']
}

const http = createHttpServer((req, res) => {
  const entry = FILES[new URL(req.url ?? '/', 'http://localhost').pathname]
  if (entry === undefined || (req.method !== 'GET' && req.method !== 'HEAD')) {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n')
    return
  }
  readFile(entry[0]).then(
    (body) => res.writeHead(200, { 'content-type': entry[1], 'cache-control': 'no-cache' }).end(req.method === 'HEAD' ? undefined : body),
    (err) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`)
  )
})

// The signalyard server shares the HTTP server: it takes the WebSocket upgrades, the files above
// take the rest.
const yard = await createServer({ server: http })

await new Promise((resolve, reject) => {
  http.once('error', reject)
  http.listen(port, host, resolve)
}).catch((err) => fail(err.code === 'EADDRINUSE' ? `port ${port} is in use (set PORT to another one)` : `cannot listen on ${host}:${port}: ${err.message}`))

// A wildcard address is not one to open: show loopback, which it includes.
const shown = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host
console.log(`video call on http://${shown}:${http.address().port}/ (open it in two tabs)`)

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, async () => {
    await yard.close()
    http.closeAllConnections()
    http.close(() => process.exit(0))
  })
}

function fail (why) {
  console.error(`video call server: ${why}`)
  process.exit(1)
}
