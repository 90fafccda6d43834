// The Node.js functions' database client: lambdas/db.py's contract, on node-postgres.
//
// One connection per instance, opened on the first invocation and reused while warm; the pooler
// (PgBouncer in transaction mode) does the pooling, so no client-side pool. No session state:
// timeouts are `SET LOCAL` inside the transaction. Named prepared statements only when the stack
// says the pooler tracks them (LIFEGUARD_POOLER_PREPARED_STATEMENTS=1).
//
// A warm instance may find its connection dead (the pooler restarted or closed it while the instance
// was frozen): it reconnects once, and only while nothing of the invocation has run (BEGIN changes
// nothing). The URL comes from DATABASE_URL (local) or the Secrets Manager secret named by
// DATABASE_URL_SECRET_ARN (AWS: read once per instance, and once more when the pooler rejects the
// credentials, since a changed password rolls the pooler). It never appears in a log line or a message.
import pg from 'pg'

export const POOLED_URL_ENV = 'DATABASE_URL'
export const POOLED_URL_SECRET_ARN_ENV = 'DATABASE_URL_SECRET_ARN'
export const PREPARED_ENV = 'LIFEGUARD_POOLER_PREPARED_STATEMENTS'
export const CONNECT_TIMEOUT_ENV = 'LIFEGUARD_CONNECT_TIMEOUT'
export const STATEMENT_TIMEOUT_ENV = 'LIFEGUARD_STATEMENT_TIMEOUT_MS'

const MIN_CONNECT_TIMEOUT_S = 2
const MAX_CONNECT_TIMEOUT_S = 900
const MAX_STATEMENT_TIMEOUT_MS = 2 ** 31 - 1
const TRUE = new Set(['1', 'true', 'yes', 'on'])
const FALSE = new Set(['0', 'false', 'no', 'off', ''])

// bigint columns (ids, credits, amounts) as numbers, as Python's ints print in JSON; beyond 2^53 as
// BigInt, which log.mjs's JSON writes digit for digit. timestamptz as Postgres' text: a Date would drop
// the microseconds the Python functions answer with.
const types = {
  getTypeParser(oid, format) {
    if (oid === pg.types.builtins.INT8) {
      return (text) => {
        const n = Number(text)
        return Number.isSafeInteger(n) ? n : BigInt(text)
      }
    }
    if (oid === pg.types.builtins.TIMESTAMPTZ) return (text) => text
    return pg.types.getTypeParser(oid, format)
  },
}

export class ConfigurationError extends Error {}

// The database could not serve this invocation; `message` is a fixed sentence safe for the caller.
export class DatabaseUnavailable extends Error {
  constructor(reason, message, retryable) {
    super(message)
    this.reason = reason
    this.retryable = retryable
  }
}

const MESSAGES = {
  unreachable: ['could not connect to the database (connection refused or timed out); retry later, and check ' +
    'that the pooler is running and reachable from the function', true],
  authentication_failed: [`the database rejected the function's credentials; check the ${POOLED_URL_ENV} secret`, false],
  pool_timeout: ["all pooled database connections stayed busy longer than the pooler's query_wait_timeout; " +
    'retry with backoff, or raise the pool size', true],
  overloaded: ['the pooler or the database refused more connections; retry with backoff', true],
  database_unreachable: ['the pooler could not reach the database server; retry later', true],
  connection_lost: ['the database connection was lost before the transaction committed; nothing was written, ' +
    'retry the call', true],
  statement_timeout: ['a database statement ran longer than the statement timeout and was cancelled; nothing was ' +
    'written, retry later', true],
  lock_timeout: ['timed out waiting for a database lock; nothing was written, retry later', true],
  outcome_unknown: ['the database connection was lost while committing, so the outcome is unknown; retry with ' +
    'the same idempotency key, which applies the change at most once', true],
}

// pg marks a client it can no longer use (_queryable false) as its socket fails; 'error' and 'end'
// set `dead` for one that died while idle.
function isDead(client) {
  return client.dead || client._queryable === false || client._ending === true
}

export function unavailable(reason) {
  const [message, retryable] = MESSAGES[reason]
  return new DatabaseUnavailable(reason, message, retryable)
}

function overloaded(state, text) {
  return state === '53300' || text.includes('no more connections allowed') || text.includes('too many clients') ||
    text.includes('remaining connection slots are reserved')
}

// lambdas/db.py's _classify: the SQLSTATE, or PgBouncer's message (it reports its own conditions as
// 08P01 with the condition as the text).
// The SQLSTATE of an error the server (or PgBouncer) sent; null for the driver's and the socket's own
// (whose `code` is a Node.js error code such as ECONNREFUSED or EPIPE).
function sqlstate(error) {
  return error?.severity !== undefined && typeof error.code === 'string' ? error.code : null
}

export function classify(error, fallback) {
  const state = sqlstate(error) ?? ''
  const text = String(error?.message ?? '').toLowerCase()
  if (text.includes('query_wait_timeout')) return 'pool_timeout'
  if (text.includes('server_login_retry') || text.includes('server login has been failing')) {
    return overloaded('', text) ? 'overloaded' : 'database_unreachable'
  }
  if (text.includes('cannot connect to server') || text.includes('(server down)')) return 'database_unreachable'
  if (overloaded(state, text)) return 'overloaded'
  if (state.startsWith('28') || text.includes('authentication failed')) return 'authentication_failed'
  if (state === '57014') return 'statement_timeout'
  if (state === '55P03') return 'lock_timeout'
  return fallback
}

// A statement failed because the connection had died, not because it was refused: no SQLSTATE (a
// transport error), a server shutdown or terminated backend, or PgBouncer's client_idle_timeout.
function lostInTransit(error) {
  const state = sqlstate(error)
  if (state === null || state === '57P01' || state === '57P02') return true
  return state === '08P01' && error.message === 'client_idle_timeout'
}

// A string as Python's repr() shows it: the Python client's messages, word for word.
function pyRepr(text) {
  const quote = text.includes("'") && !text.includes('"') ? '"' : "'"
  const escaped = text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/\r/g, '\\r').replace(/\t/g, '\\t')
  return quote + (quote === "'" ? escaped.replace(/'/g, "\\'") : escaped) + quote
}

function flag(env, name) {
  const value = String(env[name] ?? '').trim().toLowerCase()
  if (TRUE.has(value)) return true
  if (FALSE.has(value)) return false
  throw new ConfigurationError(`${name} must be 1 or 0 (true/false), got ${pyRepr(value)}`)
}

function int(env, name, fallback, minimum, maximum) {
  const raw = String(env[name] ?? '').trim()
  if (!raw) return fallback
  if (raw.length > 20) throw new ConfigurationError(`${name} must be from ${minimum} to ${maximum}, got ${raw.length} characters`)
  if (!/^[+-]?\d+$/.test(raw)) throw new ConfigurationError(`${name} must be a whole number, got ${pyRepr(raw)}`)
  const value = Number(raw)
  if (!(minimum <= value && value <= maximum)) throw new ConfigurationError(`${name} must be from ${minimum} to ${maximum}, got ${value}`)
  return value
}

// lambdas/db.py's ClientSettings.from_env, with its bounds and messages.
export function settingsFromEnv(env) {
  return {
    poolerPreparedStatements: flag(env, PREPARED_ENV),
    connectTimeout: int(env, CONNECT_TIMEOUT_ENV, 5, MIN_CONNECT_TIMEOUT_S, MAX_CONNECT_TIMEOUT_S),
    statementTimeoutMs: int(env, STATEMENT_TIMEOUT_ENV, 10_000, 0, MAX_STATEMENT_TIMEOUT_MS),
    // Lambda names the function; it shows in pg_stat_activity and the pooler's SHOW CLIENTS.
    applicationName: String(env.AWS_LAMBDA_FUNCTION_NAME ?? 'lifeguard').slice(0, 63),
  }
}

// Where the URL came from is named in a message, never what it holds.
function checkUrl(url, source) {
  if (!url.trim()) throw new ConfigurationError(`${source} is empty; it must hold a postgresql:// URL`)
  let parsed
  try {
    parsed = new URL(url)
  } catch {
    parsed = null
  }
  if (!parsed || !['postgresql:', 'postgres:'].includes(parsed.protocol) || !parsed.hostname) {
    throw new ConfigurationError(`${source} is not a valid PostgreSQL connection URL (expected ` +
      'postgresql://USER:PASSWORD@HOST:PORT/DBNAME?sslmode=verify-full)')
  }
  return parsed
}

// Masks the URL and its password in text before it is logged (belt and braces: pg's messages name
// hosts and users, never passwords).
export function redactor(url) {
  const pieces = [url]
  try {
    const password = new URL(url).password
    if (password.length >= 4) pieces.push(password, decodeURIComponent(password))
  } catch {
    // not a URL: only the whole string is masked
  }
  return (text) => pieces.reduce((acc, piece) => (piece ? acc.split(piece).join('***') : acc), String(text))
}

async function defaultSecretsClient(region) {
  // In the Lambda Node.js runtime (AWS SDK v3); never bundled in the zip.
  const { SecretsManagerClient, GetSecretValueCommand } = await import('@aws-sdk/client-secrets-manager')
  const client = new SecretsManagerClient({ region, maxAttempts: 3, requestHandler: { connectionTimeout: 5000, requestTimeout: 5000 } })
  return { getSecretValue: (SecretId) => client.send(new GetSecretValueCommand({ SecretId })) }
}

export async function fetchSecretUrl(arn, clientFactory = defaultSecretsClient) {
  const parts = arn.split(':')
  if (parts.length < 7 || parts[0] !== 'arn' || parts[2] !== 'secretsmanager' || !parts[3]) {
    throw new ConfigurationError(`${POOLED_URL_SECRET_ARN_ENV} must be a Secrets Manager secret ARN ` +
      `(arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME), got ${JSON.stringify(arn)}`)
  }
  let response
  try {
    response = await (await clientFactory(parts[3])).getSecretValue(arn)
  } catch (error) {
    if (error?.$metadata?.httpStatusCode) {
      throw new ConfigurationError(`could not read the database secret ${arn} (${error.name ?? 'error'}); check that ` +
        "the function's role may call secretsmanager:GetSecretValue on it")
    }
    throw new ConfigurationError(`could not reach Secrets Manager for ${arn} (${error?.name ?? 'error'}); a function in ` +
      'private subnets needs a Secrets Manager VPC endpoint or a NAT route')
  }
  if (!response?.SecretString) {
    throw new ConfigurationError(`the secret ${arn} has no SecretString; store the URL as the secret's text`)
  }
  return response.SecretString
}

// One function instance's database access: a lazily opened connection, reused while warm.
export class Database {
  constructor({ env = process.env, secretsClientFactory = defaultSecretsClient, log = () => {} } = {}) {
    this.env = env
    this.secretsClientFactory = secretsClientFactory
    this.log = log
    this.stats = { connects: 0, reconnects: 0, secretFetches: 0 }
    this.resolved = null
    this.fromSecret = false
    this.client = null
    this.busy = false
  }

  async resolve() {
    if (this.resolved === null) {
      const settings = settingsFromEnv(this.env)
      const plain = String(this.env[POOLED_URL_ENV] ?? '').trim()
      const arn = String(this.env[POOLED_URL_SECRET_ARN_ENV] ?? '').trim()
      let url, source
      if (plain && arn) {
        throw new ConfigurationError(`both ${POOLED_URL_ENV} and ${POOLED_URL_SECRET_ARN_ENV} are set; set only one ` +
          `(${POOLED_URL_ENV} locally, ${POOLED_URL_SECRET_ARN_ENV} on AWS)`)
      } else if (arn) {
        url = await fetchSecretUrl(arn, this.secretsClientFactory)
        this.stats.secretFetches += 1
        this.fromSecret = true
        source = `the secret ${arn}`
      } else if (plain) {
        url = plain
        source = POOLED_URL_ENV
      } else {
        throw new ConfigurationError(`no database configured: set ${POOLED_URL_ENV} (a postgresql:// URL) or ` +
          `${POOLED_URL_SECRET_ARN_ENV} (the ARN of a Secrets Manager secret holding it)`)
      }
      const parsed = checkUrl(url, source)
      this.resolved = { url, settings, redact: redactor(url), urlTimeout: parsed.searchParams.has('connect_timeout') }
    }
    return this.resolved
  }

  // Opens a connection; after an authentication failure with a URL from the secret, reads it once more.
  async connect() {
    try {
      return await this.open()
    } catch (error) {
      if (!(error instanceof DatabaseUnavailable) || error.reason !== 'authentication_failed' || !this.fromSecret) throw error
    }
    this.log('INFO', 'the database rejected the credentials; reading the secret again', {})
    this.resolved = null
    return await this.open()
  }

  async open() {
    const { url, settings, redact, urlTimeout } = await this.resolve()
    const client = new pg.Client({
      connectionString: url,
      types,
      // The URL's own connect_timeout wins, as libpq's does in the Python client.
      ...(urlTimeout ? {} : { connectionTimeoutMillis: settings.connectTimeout * 1000 }),
      keepAlive: true,
      keepAliveInitialDelayMillis: 60_000, // far below the NLB's 350 s idle timeout
      application_name: settings.applicationName,
    })
    client.dead = false
    // An idle connection that dies emits 'error' (unhandled, it would crash the instance) or 'end':
    // mark it, and the next invocation opens a new one.
    client.on('error', () => { client.dead = true })
    client.on('end', () => { client.dead = true })
    try {
      await client.connect()
    } catch (error) {
      client.dead = true
      const reason = classify(error, 'unreachable')
      this.log('WARNING', `database connect failed: ${reason} (${redact(summary(error))})`, { outcome: 'connect_failed', reason })
      throw unavailable(reason)
    }
    this.stats.connects += 1
    return client
  }

  discard() {
    const client = this.client
    this.client = null
    if (client) client.end().catch(() => {})
  }

  // BEGIN and SET LOCAL in one round trip, which doubles as the liveness check of a warm connection:
  // if it fails on a dead connection, nothing of the invocation ran, so reconnecting once is safe.
  async begin(readOnly) {
    const { settings, redact } = await this.resolve()
    let start = readOnly ? 'BEGIN READ ONLY' : 'BEGIN'
    if (settings.statementTimeoutMs) start += `; SET LOCAL statement_timeout = ${Math.trunc(settings.statementTimeoutMs)}`
    let client = this.client
    if (client && isDead(client)) {
      this.log('INFO', 'the kept connection was closed while idle; reconnecting', { outcome: 'idle_closed' })
      this.discard()
      client = null
    }
    let warm = client !== null
    for (;;) {
      if (client === null) {
        if (this.stats.connects) this.stats.reconnects += 1
        client = await this.connect()
        this.client = client
      }
      try {
        await client.query(start)
        return client
      } catch (error) {
        const dead = isDead(client) || lostInTransit(error)
        this.discard()
        if (!(warm && dead && lostInTransit(error))) {
          const reason = classify(error, 'connection_lost')
          this.log('WARNING', `could not start a transaction: ${reason} (${redact(summary(error))})`, { outcome: 'begin_failed', reason })
          throw unavailable(reason)
        }
        this.log('INFO', `warm connection was dead (${redact(summary(error))}); reconnecting once`, { outcome: 'warm_dead' })
        client = null
        warm = false // a fresh connection gets no second chance
      }
    }
  }

  // Runs `body(query)` in one transaction: committed if it returns, rolled back if it throws.
  // `query(name, text, values)` names the statement only when the pooler tracks prepared statements.
  async transaction(body, { readOnly = false } = {}) {
    if (this.busy) throw new Error('this Database is already serving an invocation; give each concurrent instance its own')
    this.busy = true
    try {
      const { settings, redact } = await this.resolve()
      const client = await this.begin(readOnly)
      const query = (name, text, values) =>
        client.query(settings.poolerPreparedStatements ? { name, text, values } : { text, values })
      let result
      try {
        result = await body(query)
      } catch (error) {
        const lost = isDead(client)
        await this.rollback(client)
        if (error instanceof DatabaseUnavailable) throw error
        const reason = classify(error, '')
        if (lost || reason !== '') {
          const why = reason || 'connection_lost'
          this.log('WARNING', `transaction failed: ${why} (${redact(summary(error))})`, { outcome: 'transaction_failed', reason: why })
          throw unavailable(why)
        }
        throw error // an error in the SQL itself: the handler reports it (500, its SQLSTATE logged)
      }
      try {
        await client.query('COMMIT')
      } catch (error) {
        if (!isDead(client)) {
          // A deferred constraint or serialization failure at commit: rolled back, reported as is.
          await this.rollback(client)
          throw error
        }
        this.discard()
        if (readOnly) {
          // Nothing to commit: what the block read stands; the next invocation reconnects.
          this.log('INFO', `connection lost after a read-only transaction (${redact(summary(error))})`, { outcome: 'lost_after_read' })
          return result
        }
        this.log('ERROR', `connection lost during COMMIT: outcome unknown (${redact(summary(error))})`, { outcome: 'commit_unknown' })
        throw unavailable('outcome_unknown')
      }
      return result
    } finally {
      this.busy = false
    }
  }

  async rollback(client) {
    if (isDead(client)) return this.discard()
    try {
      await client.query('ROLLBACK')
    } catch {
      this.discard()
    }
  }

  async close() {
    const client = this.client
    this.client = null
    if (client) await client.end().catch(() => {})
  }
}

function summary(error) {
  const state = sqlstate(error) ?? error?.code ?? 'no sqlstate'
  const first = String(error?.message ?? error).trim().split('\n')[0]
  return `${error?.name ?? 'Error'} [${state}]: ${first}`
}
