// Event validation, responses and logs shared by the Node.js handlers: lambdas/api.py's contract.
// Responses are {statusCode, body} with a JSON body whose keys are sorted and separators compact, as
// Python's json.dumps(sort_keys=True, separators=(",", ":")) writes them: a caller (or a test) sees
// the same bytes from either runtime.
import { ConfigurationError, DatabaseUnavailable } from './db.mjs'

export const MISCONFIGURED_MESSAGE = 'the function is misconfigured; its log says what to change'
const BIGINT_MAX = 2n ** 63n - 1n

export class BadEvent extends Error {}

// JSON with sorted keys; BigInt (bigint columns beyond 2^53) written digit for digit.
export function stableJson(value) {
  if (typeof value === 'bigint') return value.toString()
  if (Array.isArray(value)) return `[${value.map(stableJson).join(',')}]`
  if (value !== null && typeof value === 'object') {
    return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${stableJson(value[k])}`).join(',')}}`
  }
  // Python escapes every non-ASCII character (ensure_ascii); so does this.
  return JSON.stringify(value).replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
}

// One JSON log line with the Python functions' fields (function, outcome, reason, ...). Written to
// stdout as it is: with Lambda's JSON log format, console.* would nest it under "message".
export function log(level, message, fields = {}) {
  process.stdout.write(`${stableJson({ timestamp: new Date().toISOString(), level, logger: 'lambdas', message, ...fields })}\n`)
}

export function respond(status, payload) {
  return { statusCode: status, body: stableJson(payload) }
}

export function error(status, code, message, details = {}) {
  return respond(status, { error: code, message, ...details })
}

function jsonType(value) {
  if (value === null) return 'null'
  if (typeof value === 'boolean') return 'a boolean'
  if (typeof value === 'number') return Number.isInteger(value) ? 'an integer' : 'a number with a fraction'
  if (typeof value === 'string') return value.trim() ? 'a string' : 'an empty string'
  if (Array.isArray(value)) return value.length ? 'a list' : 'an empty list'
  if (typeof value === 'object') return 'an object'
  return typeof value
}

export function requireObject(event, allowed) {
  const names = [...allowed].sort()
  if (event === null || typeof event !== 'object' || Array.isArray(event)) {
    throw new BadEvent(`the event must be a JSON object with ${names.join(', ')}`)
  }
  const unknown = Object.keys(event).filter((k) => !allowed.includes(k)).sort()
  if (unknown.length) throw new BadEvent(`unknown field(s) ${unknown.join(', ')}; expected only ${names.join(', ')}`)
  return event
}

export function requireInt(event, name, minimum = 1) {
  if (!Object.hasOwn(event, name)) throw new BadEvent(`missing field '${name}': a whole number from ${minimum} to ${BIGINT_MAX}`)
  const value = event[name]
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new BadEvent(`'${name}' must be a whole number (JSON integer), got ${jsonType(value)}`)
  }
  if (value < minimum) throw new BadEvent(`'${name}' must be from ${minimum} to ${BIGINT_MAX}, got ${value}`)
  if (!Number.isSafeInteger(value)) {
    // JSON.parse has already rounded it: refused rather than read as another number.
    throw new BadEvent(`'${name}' is beyond ${Number.MAX_SAFE_INTEGER}, the largest whole number a Node.js function reads exactly`)
  }
  return value
}

// Runs a handler body and turns every failure into a response the caller can act on (lambdas/api.py's run).
export async function run(name, work) {
  try {
    return await work()
  } catch (exc) {
    if (exc instanceof BadEvent) return error(400, 'bad_request', exc.message)
    if (exc instanceof DatabaseUnavailable) {
      log('WARNING', `${name}: database unavailable: ${exc.reason}`, { function: name, outcome: 'database_unavailable', reason: exc.reason })
      return error(503, 'database_unavailable', exc.message, { reason: exc.reason, retryable: exc.retryable })
    }
    if (exc instanceof ConfigurationError) {
      log('ERROR', `${name}: misconfigured: ${exc.message}`, { function: name, outcome: 'misconfigured' })
      return error(500, 'misconfigured', MISCONFIGURED_MESSAGE)
    }
    if (exc?.severity && typeof exc.code === 'string') {
      // The server's text can name tables and values but never credentials; it stays in the log.
      log('ERROR', `${name}: database error ${exc.code}: ${exc.message}`, { function: name, outcome: 'database_error', sqlstate: exc.code })
      return error(500, 'internal_error', 'the function failed on a database error; see its log')
    }
    throw exc
  }
}
