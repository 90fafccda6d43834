// The `audit` function of another stack (a zip, Node.js 24): records who looked at what, through the pooler.
//
// One client per instance, connected on the first call and reused while warm. The URL comes from the
// secret named by DATABASE_URL_SECRET_ARN (PooledClient's environment); its sslrootcert, and
// NODE_EXTRA_CA_CERTS, name the pooler's CA at /opt/lifeguard/pooler-ca.pem, which the CA layer puts there.
// node-postgres never prepares unless a query is named, so nothing collides on the pooler's shared servers.
// Install its one dependency before `pulumi up`: `npm ci --omit=dev` in this folder.
import { GetSecretValueCommand, SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import pg from "pg";

let client;

async function connect() {
  const secrets = new SecretsManagerClient({});
  const { SecretString: url } = await secrets.send(
    new GetSecretValueCommand({ SecretId: process.env.DATABASE_URL_SECRET_ARN }),
  );
  const connection = new pg.Client({ connectionString: url });
  await connection.connect();
  return connection;
}

export const handler = async (event) => {
  client ??= await connect();
  const { rows } = await client.query(
    "INSERT INTO audit_log (actor, subject) VALUES ($1, $2) RETURNING id",
    [event.actor, event.subject],
  );
  return { statusCode: 201, body: JSON.stringify({ id: rows[0].id }) };
};
