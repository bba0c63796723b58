// Runs once, when the mongo:7 container initialises an empty data volume (docker-entrypoint-initdb.d),
// as the root user from MONGO_INITDB_ROOT_USERNAME/PASSWORD. Creates, in QORT_DB_NAME:
//   QORT_APP_USER     readWrite  (the worker and qortcli: writes results, creates indexes)
//   QORT_VIEWER_USER  read       (the viewer: can read every collection, cannot write anything)
// The values come from the environment (docker-compose.yml passes them from .env); nothing is hard-coded.
// To change a password later: docker compose exec mongodb mongosh -u "$MONGO_ROOT_USER" -p ... and
// db.getSiblingDB("<db>").changeUserPassword("<user>", "<new password>").

function required(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: define it in .env (see .env.example)`);
  }
  if (name.endsWith("PASSWORD") && value.toLowerCase().startsWith("change-me")) {
    throw new Error(`${name} still holds the placeholder of .env.example: set a real password in .env`);
  }
  return value;
}

const dbName = process.env.QORT_DB_NAME || "qortfolio";
const target = db.getSiblingDB(dbName);

const users = [
  { user: required("QORT_APP_USER"), pwd: required("QORT_APP_PASSWORD"), roles: [{ role: "readWrite", db: dbName }] },
  { user: required("QORT_VIEWER_USER"), pwd: required("QORT_VIEWER_PASSWORD"), roles: [{ role: "read", db: dbName }] },
];

for (const spec of users) {
  if (target.getUser(spec.user)) {
    target.updateUser(spec.user, { pwd: spec.pwd, roles: spec.roles });
    print(`qortfolio: updated user ${spec.user} on ${dbName}`);
  } else {
    target.createUser(spec);
    print(`qortfolio: created user ${spec.user} on ${dbName} with ${spec.roles[0].role}`);
  }
}
