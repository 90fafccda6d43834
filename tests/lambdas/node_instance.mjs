// One Lambda instance of a Node.js function, driven by the tests over stdin/stdout (JSON lines):
//   node node_instance.mjs <installed function folder> <module>
// In: {"op": "invoke", "event": ...} (the handler body with this instance's Database, as the local
// invoker runs it), {"op": "handler", "event": ...} (the module's own Lambda entry point), {"op": "stats"}.
// Out: one {"type": "result", ...} line per request; the function's own log lines come in between.
import { createInterface } from 'node:readline'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'

const [folder, module] = process.argv.slice(2)
const fn = await import(pathToFileURL(join(folder, `${module}.mjs`)).href)
const { Database } = await import(pathToFileURL(join(folder, 'db.mjs')).href)
const { log } = await import(pathToFileURL(join(folder, 'api.mjs')).href)
const database = new Database({ log })

const reply = (message) => process.stdout.write(`${JSON.stringify({ type: 'result', ...message })}\n`)
for await (const line of createInterface({ input: process.stdin })) {
  const request = JSON.parse(line)
  try {
    if (request.op === 'invoke') reply({ response: await fn.handle(request.event, database) })
    else if (request.op === 'handler') reply({ response: await fn.handler(request.event, {}) })
    else if (request.op === 'stats') reply({ stats: database.stats })
    else reply({ error: `unknown op ${request.op}` })
  } catch (error) {
    // What the Lambda runtime would report as the invocation's error.
    reply({ unhandled: `${error?.name}: ${error?.message}` })
  }
}
await database.close()
// The module's own instance (the `handler` op) may still hold its connection: end like a recycled instance.
process.exit(0)
