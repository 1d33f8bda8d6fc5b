// An independent OPC UA server for bench/scenario_nodeopcua.py: node-opcua, not asyncua.
//
//   node server.js PORT ITEMS RATE CAP PKI_DIR
//
// Serves ITEMS Double variables "ns=1;s=v<n>" on opc.tcp://127.0.0.1:PORT (listening on
// 127.0.0.1 only, no security). CAP is the most notifications a message carries (node-opcua's
// Subscription.maxNotificationPerPublishHighLimit, which revises every subscription's
// MaxNotificationsPerPublish down to it; 0 = no cap worth the name) and is stated in
// ServerCapabilities. Prints "ready" once listening. On a line "produce SECONDS" on stdin it
// changes RATE variables a second in total (round robin, paced by the clock on a 100 ms timer,
// each value one more than the variable's last), then prints "produced N"; "quit" stops it.
"use strict";

const readline = require("readline");
const {
    OPCUAServer,
    OPCUACertificateManager,
    Subscription,
    Variant,
    DataType,
    StatusCodes,
} = require("node-opcua");

const [port, items, rate, cap] = process.argv.slice(2, 6).map((text) => parseInt(text, 10));
const pki = process.argv[6];

async function main() {
    Subscription.maxNotificationPerPublishHighLimit = cap > 0 ? cap : 1_000_000;
    const server = new OPCUAServer({
        port,
        host: "127.0.0.1",
        hostname: "127.0.0.1",
        serverCertificateManager: new OPCUACertificateManager({
            rootFolder: pki,
            automaticallyAcceptUnknownCertificate: true,
        }),
        serverCapabilities: {
            maxNotificationsPerPublish: cap > 0 ? cap : 0,
            maxMonitoredItemsPerSubscription: 100_000,
            maxMonitoredItems: 1_000_000,
        },
        maxConnectionsPerEndpoint: 10,
    });
    await server.initialize();
    const namespace = server.engine.addressSpace.getOwnNamespace();
    const folder = namespace.addFolder(server.engine.addressSpace.rootFolder.objects, {
        browseName: "Bench",
    });
    const variables = [];
    const values = new Float64Array(items);
    for (let n = 0; n < items; n++) {
        variables.push(
            namespace.addVariable({
                componentOf: folder,
                browseName: `v${n}`,
                nodeId: `s=v${n}`,
                dataType: "Double",
                value: { dataType: DataType.Double, value: 0 },
            })
        );
    }
    await server.start();
    process.stdout.write("ready\n");

    let next = 0;
    function produce(seconds) {
        // Paced by the clock, not by the timer's ticks: a tick that comes late (a busy machine)
        // makes up for the changes due since the last one, so RATE a second holds on average.
        const started = Date.now();
        const total = Math.round(rate * seconds);
        let produced = 0;
        const timer = setInterval(() => {
            const due = Math.min(total, Math.floor(((Date.now() - started) / 1000) * rate));
            const now = new Date();
            for (; produced < due; produced++) {
                const n = next;
                next = (next + 1) % items;
                values[n] += 1;
                variables[n].setValueFromSource(
                    new Variant({ dataType: DataType.Double, value: values[n] }),
                    StatusCodes.Good,
                    now
                );
            }
            if (produced >= total) {
                clearInterval(timer);
                process.stdout.write(`produced ${produced} in ${(Date.now() - started) / 1000} s\n`);
            }
        }, 100);
    }

    const lines = readline.createInterface({ input: process.stdin });
    for await (const line of lines) {
        const [command, argument] = line.trim().split(/\s+/);
        if (command === "produce") {
            produce(parseFloat(argument));
        } else if (command === "quit") {
            break;
        }
    }
    await server.shutdown(0);
    process.exit(0);
}

main().catch((error) => {
    process.stderr.write(`${error.stack || error}\n`);
    process.exit(1);
});
