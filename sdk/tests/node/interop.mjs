// Fabric's official Node Gateway client (@hyperledger/fabric-gateway), unchanged, against a
// Mercato peer: submitTransaction, evaluateTransaction, submitAsync + getStatus, chaincode
// events, block events, and an endorsement error with its details. Run by the sdk crate's
// interop test, which starts the network and passes where it is:
//
//   MERCATO_PEER=127.0.0.1:7051 MERCATO_TLS_ROOT=tls-ca.pem MERCATO_CERT=cert.pem \
//   MERCATO_KEY=key.pem MERCATO_MSP_ID=Brand1MSP MERCATO_CHANNEL=commerce \
//   MERCATO_CHAINCODE=testcc node interop.mjs
//
// It prints one line per check and exits non-zero on the first that fails.

import * as grpc from '@grpc/grpc-js';
import { connect, signers, EndorseError } from '@hyperledger/fabric-gateway';
import { createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';

const env = (name) => {
    const v = process.env[name];
    if (!v) {
        throw new Error(`${name} is not set`);
    }
    return v;
};

const text = (bytes) => Buffer.from(bytes).toString('utf8');

function check(what, ok, detail) {
    if (!ok) {
        throw new Error(`${what}: ${detail}`);
    }
    console.log(`ok - ${what}`);
}

async function main() {
    const client = new grpc.Client(
        env('MERCATO_PEER'),
        grpc.credentials.createSsl(readFileSync(env('MERCATO_TLS_ROOT'))),
    );
    const gateway = connect({
        client,
        identity: { mspId: env('MERCATO_MSP_ID'), credentials: readFileSync(env('MERCATO_CERT')) },
        signer: signers.newPrivateKeySigner(createPrivateKey(readFileSync(env('MERCATO_KEY')))),
        evaluateOptions: () => ({ deadline: Date.now() + 30000 }),
        endorseOptions: () => ({ deadline: Date.now() + 30000 }),
        submitOptions: () => ({ deadline: Date.now() + 30000 }),
        commitStatusOptions: () => ({ deadline: Date.now() + 60000 }),
    });
    try {
        const network = gateway.getNetwork(env('MERCATO_CHANNEL'));
        const contract = network.getContract(env('MERCATO_CHAINCODE'));

        await contract.submitTransaction('put', 'node-key', 'from node');
        check('submitTransaction', true);

        const got = text(await contract.evaluateTransaction('get', 'node-key'));
        check('evaluateTransaction', got === 'from node', `got ${JSON.stringify(got)}`);

        const submitted = await contract.submitAsync('order', { arguments: ['shop-node', 'order-node'] });
        const status = await submitted.getStatus();
        check(
            'submitAsync + getStatus',
            status.successful && status.transactionId === submitted.getTransactionId(),
            `status ${JSON.stringify({ code: status.code, id: status.transactionId })}`,
        );

        const events = await network.getChaincodeEvents(env('MERCATO_CHAINCODE'), {
            startBlock: status.blockNumber,
        });
        try {
            const first = (await events[Symbol.asyncIterator]().next()).value;
            check(
                'getChaincodeEvents',
                first.eventName === 'OrderPlaced' &&
                    text(first.payload) === 'order-node' &&
                    first.transactionId === status.transactionId &&
                    first.blockNumber === status.blockNumber,
                `event ${JSON.stringify({ name: first.eventName, tx: first.transactionId })}`,
            );
        } finally {
            events.close();
        }

        const blocks = await network.getBlockEvents({ startBlock: status.blockNumber });
        try {
            const block = (await blocks[Symbol.asyncIterator]().next()).value;
            const number = BigInt(block.getHeader().getNumber());
            check('getBlockEvents', number === status.blockNumber, `block ${number}`);
        } finally {
            blocks.close();
        }

        try {
            await contract.submitTransaction('fail', 'sold out');
            check('a chaincode error is an EndorseError', false, 'the submit succeeded');
        } catch (e) {
            check(
                'a chaincode error is an EndorseError with details',
                e instanceof EndorseError &&
                    e.details.length > 0 &&
                    e.details.every((d) => d.message.includes('sold out') && d.mspId),
                `${e}: ${JSON.stringify(e.details)}`,
            );
        }
    } finally {
        gateway.close();
        client.close();
    }
}

main().catch((e) => {
    console.error(`not ok - ${e.stack ?? e}`);
    process.exit(1);
});
