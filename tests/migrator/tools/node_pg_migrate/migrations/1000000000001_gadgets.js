// A node-pg-migrate migration as a user would write it (CommonJS), run by tests/migrator/test_tools.py
// through `python -m migrator run -- node-pg-migrate up`, which reads DATABASE_URL.
const fs = require("node:fs");

exports.up = async (pgm) => {
  pgm.createTable("gadgets", { id: "id", name: { type: "text", notNull: true } });
  // A test holds this run here (MIGRATION_GATE: a file it creates) until a second run waits for it.
  const gate = process.env.MIGRATION_GATE;
  const deadline = Date.now() + 120000;
  while (gate && !fs.existsSync(gate) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
};

exports.down = (pgm) => {
  pgm.dropTable("gadgets");
};
