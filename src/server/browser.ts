/** The `browser` condition of `signalyard/server`: the server needs Node, so fail loudly. */
throw new Error('signalyard/server runs only in Node (it opens TCP ports); in a browser import the client: `import { SignalChannel } from \'signalyard\'`')
