// Runs the official Make TypeScript SDK (@makehq/sdk, unpatched, the version
// pinned in package.json) against a running Credence and calls every
// credential-request and connection method it offers, plus the account
// calls a client makes first. Driven by crates/credence/tests/api/sdk.rs, which
// prepares the data, passes it in the environment, and checks both these
// answers and what changed in Credence's store.
//
// Prints one JSON line per call:
//   {"call", "expect", "ok": true, "result"}                    on success
//   {"call", "expect", "ok": false, "status", "message", "name"} on an error
// plus a first line {"call": "sdk.surface", ...} naming the SDK's methods, and
// exits 1 when a call did not end as expected (2 when the script itself broke).
//
// Environment (all required unless marked):
//   CREDENCE_URL               e.g. http://127.0.0.1:43123 (no /api/v2)
//   REQUESTER_TOKEN            API token of the requester (member of TEAM_ID, has the feature)
//   RECIPIENT_TOKEN            API token of the recipient (RECIPIENT_ID)
//   ORGANIZATION_ID, TEAM_ID, REQUESTER_ID, RECIPIENT_ID, RECIPIENT_EMAIL
//                              the requester is a plain member of TEAM_ID, the
//                              recipient a member of the same team
//   APP, OTHER_APP             catalog keys of two API-key apps
//   CONNECTION_ID              a live connection of TEAM_ID
//   CONNECTED_CREDENTIAL_ID    the authorized credential that holds CONNECTION_ID
//   DOOMED_REQUEST_ID          another request of TEAM_ID with a live connection, to delete
//   DISPOSABLE_REQUEST_ID      a pending request of TEAM_ID to delete
//   OWN_CONNECTION_KEY         an API key APP accepts, for connections.create
//   CONNECTIONS_API            "enabled" when Credence serves /connections; else
//                              the connection reads are expected to get 404
//                              "no such API endpoint" (not built yet)

import { readFileSync } from "node:fs";
import { Make, MakeError } from "@makehq/sdk";

function env(name) {
    const value = process.env[name];
    if (value === undefined || value === "") {
        throw new Error(`environment variable ${name} is not set`);
    }
    return value;
}

function envId(name) {
    const value = Number(env(name));
    if (!Number.isInteger(value)) {
        throw new Error(`environment variable ${name} is not an integer id`);
    }
    return value;
}

const base = new URL(env("CREDENCE_URL"));
const organizationId = envId("ORGANIZATION_ID");
const teamId = envId("TEAM_ID");
const requesterId = envId("REQUESTER_ID");
const recipientId = envId("RECIPIENT_ID");
const recipientEmail = env("RECIPIENT_EMAIL");
const app = env("APP");
const otherApp = env("OTHER_APP");
const connectionId = envId("CONNECTION_ID");
const connectedCredentialId = env("CONNECTED_CREDENTIAL_ID");
const doomedRequestId = env("DOOMED_REQUEST_ID");
const disposableRequestId = env("DISPOSABLE_REQUEST_ID");
const connectionsApi = process.env.CONNECTIONS_API === "enabled";
const ownConnectionKey = env("OWN_CONNECTION_KEY");

/** An SDK client for Credence: the zone is host:port, the protocol a public field. */
function client(token) {
    const make = new Make(token, base.host, { retry: { maxRetries: 0 } });
    make.protocol = base.protocol.replace(/:$/, "");
    return make;
}

const requester = client(env("REQUESTER_TOKEN"));
const recipient = client(env("RECIPIENT_TOKEN"));

let unexpected = 0;

function print(line) {
    process.stdout.write(JSON.stringify(line) + "\n");
}

/**
 * Runs one SDK call. `expect` is "ok" or the HTTP status the call must fail
 * with. Returns the result (undefined when the call failed).
 */
async function call(name, expect, fn) {
    const line = { call: name, expect };
    let result;
    try {
        result = await fn();
        line.ok = true;
        line.result = result === undefined ? null : result;
    } catch (error) {
        line.ok = false;
        if (error instanceof MakeError) {
            line.status = error.statusCode;
            line.name = error.name;
        } else {
            line.status = null;
            line.name = error?.name ?? "Error";
        }
        line.message = String(error?.message ?? error);
    }
    const asExpected = expect === "ok" ? line.ok : !line.ok && line.status === expect;
    if (!asExpected) {
        unexpected += 1;
        line.unexpected = true;
    }
    print(line);
    return line.ok ? result : undefined;
}

/** Own and inherited method names of an SDK endpoint object. */
function methods(object) {
    if (!object) return null;
    const names = new Set();
    for (let proto = Object.getPrototypeOf(object); proto && proto !== Object.prototype; proto = Object.getPrototypeOf(proto)) {
        for (const name of Object.getOwnPropertyNames(proto)) {
            if (name !== "constructor" && typeof object[name] === "function") names.add(name);
        }
    }
    return [...names].sort();
}

async function main() {
    const sdkPackage = JSON.parse(
        readFileSync(new URL("./node_modules/@makehq/sdk/package.json", import.meta.url), "utf8"),
    );
    print({
        call: "sdk.surface",
        version: sdkPackage.version,
        credentialRequests: methods(requester.credentialRequests),
        connections: methods(requester.connections),
        // Make's audit logs, should a later SDK offer them.
        auditLogKeys: Object.keys(requester).filter((key) => /audit/i.test(key)),
    });

    // What a client asks first: who am I, where may I work.
    await call("users.me", "ok", () => requester.users.me());
    await call("organizations.list", "ok", () => requester.organizations.list());
    await call("teams.list", "ok", () => requester.teams.list(organizationId));
    await call("teams.get", "ok", () => requester.teams.get(teamId));

    // The catalog.
    await call("credentialRequests.listAppModulesWithCredentials", "ok", () =>
        requester.credentialRequests.listAppModulesWithCredentials(app, "latest"),
    );
    await call("credentialRequests.listAppModulesWithCredentials:version", "ok", () =>
        requester.credentialRequests.listAppModulesWithCredentials(otherApp, 1),
    );
    await call("credentialRequests.listAppModulesWithCredentials:unknown", 404, () =>
        requester.credentialRequests.listAppModulesWithCredentials("no-such-app", "latest"),
    );

    // The deprecated create, Make's body as the SDK types it.
    const created = await call("credentialRequests.create", "ok", () =>
        requester.credentialRequests.create({
            name: "SDK onboarding",
            teamId,
            description: "Created by the Make SDK",
            connections: [{ type: `account:${app}`, description: "The CRM account" }],
            keys: [{ type: `keychain:${otherApp}` }],
            provider: { providerMakeUserId: recipientId },
        }),
    );
    await call("credentialRequests.create:invalid", 400, () =>
        requester.credentialRequests.create({
            name: "",
            teamId,
            keys: [{ type: "keychain:no-such-app" }],
            provider: { providerMakeUserId: recipientId },
        }),
    );
    const requestId = created?.id;

    // Reading it back.
    await call("credentialRequests.list", "ok", () => requester.credentialRequests.list(teamId));
    await call("credentialRequests.list:options", "ok", () =>
        requester.credentialRequests.list(teamId, {
            cols: ["id", "name", "status"],
            status: "pending",
            name: "SDK onboarding",
            pg: { limit: 5, offset: 0, sortBy: "name", sortDir: "asc" },
        }),
    );
    await call("credentialRequests.list:deprecated-form", "ok", () =>
        requester.credentialRequests.list({ teamId, makeProviderId: recipientId }),
    );
    await call("credentialRequests.get", "ok", () => requester.credentialRequests.get(requestId));
    await call("credentialRequests.get:cols", "ok", () =>
        requester.credentialRequests.get(requestId, { cols: ["id", "name", "teamId"] }),
    );
    await call("credentialRequests.get:unknown", 404, () =>
        requester.credentialRequests.get("00000000-0000-4000-8000-000000000000"),
    );
    const detail = await call("credentialRequests.getDetail", "ok", () =>
        requester.credentialRequests.getDetail(requestId),
    );
    await call("credentialRequests.getDetail:recipient", "ok", () =>
        recipient.credentialRequests.getDetail(requestId),
    );

    // The recipient declines one app without a reason (the SDK sends no body)
    // and the other with one.
    const credentialOf = (appName) => detail?.credentials?.find((c) => c.appName === appName)?.id;
    await call("credentialRequests.declineCredential", "ok", () =>
        recipient.credentialRequests.declineCredential(credentialOf(app)),
    );
    await call("credentialRequests.declineCredential:reason", "ok", () =>
        recipient.credentialRequests.declineCredential(credentialOf(otherApp), "We do not use Beta Desk"),
    );
    await call("credentialRequests.declineCredential:requester", 403, () =>
        requester.credentialRequests.declineCredential(credentialOf(app)),
    );

    // Actions: Credence needs the recipient Make's actions do not name.
    await call("credentialRequests.createAction", "ok", () =>
        requester.credentialRequests.createAction({
            name: "SDK action",
            description: "Created with createAction",
            teamId,
            credentials: [
                { appName: app, appModules: ["searchContacts"], appVersion: 1, nameOverride: "CRM (read)", description: "Read contacts" },
            ],
            provider: { providerMakeUserId: recipientId },
        }),
    );
    await call("credentialRequests.createAction:no-provider", 400, () =>
        requester.credentialRequests.createAction({
            teamId,
            credentials: [{ appName: app, appModules: ["*"] }],
        }),
    );
    await call("credentialRequests.createByCredentials", "ok", () =>
        requester.credentialRequests.createByCredentials({
            teamId,
            description: "Created with createByCredentials",
            connections: [{ type: `account:${app}`, nameOverride: "CRM by type" }],
            keys: [{ type: otherApp, description: "The desk key" }],
            // newUser with the address of someone in the organization asks them as a member.
            provider: { newUser: { name: "Tom", email: recipientEmail } },
        }),
    );
    await call("credentialRequests.createByCredentials:external", 403, () =>
        requester.credentialRequests.createByCredentials({
            teamId,
            keys: [{ type: `keychain:${app}` }],
            provider: { newUser: { name: "Erin External", email: "erin@client.example" } },
        }),
    );
    await call("credentialRequests.createByCredentials:no-provider", 400, () =>
        requester.credentialRequests.createByCredentials({
            name: "No recipient",
            teamId,
            keys: [{ type: `keychain:${app}` }],
        }),
    );
    await call("credentialRequests.extendConnection", 400, () =>
        requester.credentialRequests.extendConnection({ connectionId, scopes: ["contacts.write"] }),
    );
    await call("credentialRequests.extendConnection:unknown", 404, () =>
        requester.credentialRequests.extendConnection({ connectionId: 987654321, scopes: ["contacts.write"] }),
    );

    // Connection reads, on the live connection the test prepared.
    const absent = connectionsApi ? "ok" : 404;
    await call("connections.list", absent, () => requester.connections.list(teamId));
    await call("connections.get", absent, () => requester.connections.get(connectionId));
    await call("connections.verify", absent, () => requester.connections.verify(connectionId));
    await call("connections.scoped", absent, () => requester.connections.scoped(connectionId, []));
    // Make's editable data schema has no counterpart in Credence (SPEC §11):
    // nobody on the requester's side ever sees or edits an account's values.
    await call("connections.listEditableParameters", 404, () =>
        requester.connections.listEditableParameters(connectionId),
    );

    // The team's own connection, with Make's create body (the SDK sends
    // `name` as accountName and the type as accountType): added, renamed, deleted.
    const own = await call("connections.create", "ok", () =>
        requester.connections.create({ name: "SDK own", accountName: app, teamId, data: { apiKey: ownConnectionKey } }),
    );
    await call("connections.create:refused-key", 400, () =>
        requester.connections.create({ name: "SDK refused", accountName: app, teamId, data: { apiKey: "not-accepted" } }),
    );
    await call("connections.rename", "ok", () => requester.connections.rename(own?.id, "SDK own (renamed)"));
    // Make's set-data has no counterpart: nobody edits an account's values in
    // place; a new connection is added instead.
    await call("connections.update", 404, () => requester.connections.update(own?.id, { data: { apiKey: "x" } }));
    await call("connections.delete", "ok", () => requester.connections.delete(own?.id));
    await call("connections.get:deleted", 404, () => requester.connections.get(own?.id));

    // The requester deletes the remote connection: the credential is pending again.
    await call("credentialRequests.deleteCredential", "ok", () =>
        requester.credentialRequests.deleteCredential(connectedCredentialId),
    );
    await call("credentialRequests.deleteCredential:again", 409, () =>
        requester.credentialRequests.deleteCredential(connectedCredentialId),
    );

    // Deleting requests (the SDK always confirms): a pending one, and one with a
    // live connection left. What the SDK created above stays for the test to check.
    await call("credentialRequests.delete", "ok", () => requester.credentialRequests.delete(disposableRequestId));
    await call("credentialRequests.delete:live-connection", "ok", () =>
        requester.credentialRequests.delete(doomedRequestId),
    );
    await call("credentialRequests.get:deleted", 404, () =>
        requester.credentialRequests.get(disposableRequestId),
    );
}

try {
    await main();
} catch (error) {
    print({ call: "script", ok: false, message: String(error?.stack ?? error), unexpected: true });
    process.exit(2);
}
process.exit(unexpected === 0 ? 0 : 1);
