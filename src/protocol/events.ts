// Temporary: the lead removes this once the server files import echo.ts / kv.ts directly.
export { echoEventMeta, writeEchoEvent } from './echo.js'
export { writeKvEvent } from './kv.js'
