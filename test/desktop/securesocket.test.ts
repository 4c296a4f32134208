// The desktop SecureSocket against the embedded mutual-TLS broker: a real MQTT CONNECT/CONNACK and
// QoS 1 round trip through Moddable's callback API, the callback timing, and every TLS limit of
// Moddable's stack enforced with the same kind of error the device gives.
import assert from "node:assert/strict";
import { createServer, type Socket } from "node:net";
import { after, before, describe, test } from "node:test";
import SecureSocket, { MESSAGE_CONNECTED, MESSAGE_DISCONNECTED, MESSAGE_ERROR, MESSAGE_READABLE, MESSAGE_WRITABLE, SEND_BUFFER_BYTES, type SecureSocketOptions } from "../../hosts/desktop/securesocket.ts";
import Resource, { setResourceDirectory } from "../../hosts/desktop/resource.ts";
import { mergeConfig, resetConfig } from "../../hosts/desktop/config.ts";
import { setTraceSink } from "../../hosts/desktop/trace.ts";
import { startBroker, type BrokerOptions, type RunningBroker } from "../../tools/broker.ts";
import { arrayBufferOf, createFixtures, removeFixtures, type Fixtures } from "./fixtures.ts";
import { CONNACK_ACCEPTED, connectPacket, pubackPacket, publishQos0Packet, publishQos1Packet, subackPacket, subscribePacket } from "./mqtt-bytes.ts";

const TEST_TIMEOUT = { timeout: 15_000 };

let fixtures: Fixtures;
let broker: RunningBroker;
let traced = "";

before(async () => {
  fixtures = createFixtures();
  setResourceDirectory(fixtures.pki);
  setTraceSink((text) => {
    traced += text;
  });
  broker = await startBroker({ certificateDirectory: fixtures.pki });
});

after(async () => {
  await broker.stop();
  setTraceSink();
  setResourceDirectory(undefined);
  removeFixtures(fixtures);
});

type Event = [message: number, value: number | undefined];

/** Drives a SecureSocket the way device code does and records what its callback saw. */
class Probe {
  readonly socket: SecureSocket;
  readonly events: Event[] = [];
  readonly received: Buffer[] = [];
  private readonly waiters: Array<() => void> = [];

  constructor(options: SecureSocketOptions) {
    this.socket = new SecureSocket(options);
    this.socket.callback = (message, value) => {
      if (message === MESSAGE_READABLE) this.received.push(Buffer.from(this.socket.read(ArrayBuffer) as ArrayBuffer));
      this.events.push([message, value]);
      for (const wake of this.waiters.splice(0)) wake();
    };
  }

  /** Resolves with the first event for which `accept` holds; rejects on an unexpected terminal event. */
  async until(accept: (event: Event) => boolean): Promise<Event> {
    for (let seen = 0; ; ) {
      for (; seen < this.events.length; seen++) {
        const event = this.events[seen]!;
        if (accept(event)) return event;
      }
      await new Promise<void>((wake) => this.waiters.push(wake));
    }
  }

  /** The first of connected, disconnected or error. */
  outcome(): Promise<number> {
    return this.until(([message]) => message === MESSAGE_CONNECTED || message < 0).then(([message]) => message);
  }

  /** Waits until `length` bytes have arrived in total and returns them. */
  async receive(length: number): Promise<Buffer> {
    await this.until(() => Buffer.concat(this.received).length >= length);
    const bytes = Buffer.concat(this.received.splice(0));
    assert.equal(bytes.length, length, "no more bytes than expected");
    return bytes;
  }
}

function deviceOptions(overrides: Partial<SecureSocketOptions["secure"]> = {}, port = broker.port, host = "localhost"): SecureSocketOptions {
  return {
    host,
    port,
    secure: {
      protocolVersion: 0x303,
      certificate: arrayBufferOf(fixtures.caDer),
      clientCertificates: [arrayBufferOf(fixtures.deviceCertificateDer)],
      clientKey: arrayBufferOf(fixtures.deviceKeyDer),
      applicationLayerProtocolNegotiation: ["x-amzn-mqtt-ca"],
      ...overrides,
    },
  };
}

/** Expects the connection to end in message -2 with `reason` in the trace. */
async function expectTlsError(options: SecureSocketOptions, reason: RegExp): Promise<void> {
  const mark = traced.length;
  const probe = new Probe(options);
  assert.equal(await probe.outcome(), MESSAGE_ERROR);
  assert.deepEqual(probe.events, [[MESSAGE_ERROR, undefined]], "nothing but the error reaches the callback");
  assert.match(traced.slice(mark), reason);
  assert.throws(() => probe.socket.write(Uint8Array.of(0)), TypeError, "the socket is closed after an error");
}

async function withBroker(options: BrokerOptions, body: (special: RunningBroker) => Promise<void>): Promise<void> {
  const special = await startBroker({ certificateDirectory: fixtures.pki, ...options });
  try {
    await body(special);
  } finally {
    await special.stop();
  }
}

describe("desktop SecureSocket against the embedded broker", () => {
  test("CONNECT/CONNACK and a QoS 1 PUBLISH/PUBACK through Moddable's callback API", TEST_TIMEOUT, async () => {
    const clientsBefore = broker.statistics.clientsConnected;
    const messagesBefore = broker.messages.length;
    const probe = new Probe({
      host: "localhost",
      port: broker.port,
      secure: {
        protocolVersion: 0x303,
        certificate: new Resource("ca.der"),
        clientCertificates: [new Resource("device-cert.der")],
        clientKey: new Resource("device-key.der"),
        serverName: "localhost",
        applicationLayerProtocolNegotiation: ["x-amzn-mqtt-ca"],
      },
    });
    assert.equal(probe.events.length, 0, "no callback from the constructor");
    assert.throws(() => probe.socket.read(ArrayBuffer), TypeError, "read works only inside a readable callback");

    assert.equal(await probe.outcome(), MESSAGE_CONNECTED);
    assert.equal(probe.socket.write(), SEND_BUFFER_BYTES - 128, "write() reports the free send buffer less the TLS reserve");
    probe.socket.write(connectPacket("desktop-probe"));
    assert.equal(probe.events.length, 1, "no callback from inside write");
    assert.deepEqual(await probe.receive(4), Buffer.from(CONNACK_ACCEPTED));
    assert.ok(probe.events.some(([message, value]) => message === MESSAGE_WRITABLE && value === SEND_BUFFER_BYTES - 128), "writable once the data is sent");

    probe.socket.write(publishQos1Packet("iotlink/test/telemetry", 7, Buffer.from("hello")));
    assert.deepEqual(await probe.receive(4), Buffer.from(pubackPacket(7)));
    assert.ok(probe.events.filter(([message]) => message === MESSAGE_READABLE).every(([, value]) => value! > 0));

    const message = broker.messages.slice(messagesBefore).find((received) => received.clientId === "desktop-probe");
    assert.deepEqual({ topic: message?.topic, payload: message?.payload.toString(), qos: message?.qos }, { topic: "iotlink/test/telemetry", payload: "hello", qos: 1 });
    assert.equal(broker.statistics.clientsConnected, clientsBefore + 1);
    const connection = broker.connections.at(-1)!;
    assert.deepEqual(
      { alpn: connection.alpnProtocol, protocol: connection.protocol, identity: connection.identity },
      { alpn: "x-amzn-mqtt-ca", protocol: "TLSv1.2", identity: "iotlink-device" },
    );

    const eventsBeforeClose = probe.events.length;
    probe.socket.close();
    assert.throws(() => probe.socket.write(Uint8Array.of(0xe0, 0)), TypeError, "write after close throws");
    await new Promise((settle) => setTimeout(settle, 50));
    assert.equal(probe.events.length, eventsBeforeClose, "no callback after close");
  });

  test("inbound data arrives in readable callbacks of at most 1024 bytes, read with Moddable's read types", TEST_TIMEOUT, async () => {
    const payload = Buffer.alloc(3000, 0x61);
    const expected = Buffer.from(publishQos0Packet("iotlink/test/big", payload));
    const pieces: number[] = [];
    const socket = new SecureSocket(deviceOptions());
    const chunks: Buffer[] = [];
    let firstByte: number | undefined;
    let lengthAsString: string | undefined;
    const done = new Promise<void>((resolveDone, rejectDone) => {
      let stage = "connect";
      socket.callback = (message, value) => {
        if (message < 0) rejectDone(new Error(`socket ended with ${message}`));
        if (message === MESSAGE_CONNECTED) socket.write(connectPacket("desktop-reader"), subscribePacket(1, "iotlink/test/big", 0));
        if (message !== MESSAGE_READABLE) return;
        pieces.push(value!);
        assert.equal(socket.read(), value, "read() with no argument returns the bytes left");
        if (stage === "connect") {
          // CONNACK and SUBACK may share one callback; take them apart with a count limit.
          assert.deepEqual(Buffer.from(socket.read(ArrayBuffer, 4) as ArrayBuffer), Buffer.from(CONNACK_ACCEPTED));
          stage = "suback";
          if (socket.read() === 0) return;
        }
        if (stage === "suback") {
          assert.deepEqual(Buffer.from(socket.read(ArrayBuffer) as ArrayBuffer), Buffer.from(subackPacket(1, 0)));
          assert.equal(socket.read(ArrayBuffer), undefined, "nothing left to read");
          stage = "publish";
          void broker.publish("iotlink/test/big", payload, 0);
          return;
        }
        if (firstByte === undefined) {
          firstByte = socket.read(Number) as number;
          // Remaining length (2 bytes), then the topic length, whose high byte is 0: String stops there.
          lengthAsString = socket.read(String, 3) as string;
          chunks.push(expected.subarray(1, 4));
        }
        chunks.push(Buffer.from(socket.read(ArrayBuffer) as ArrayBuffer));
        if (1 + Buffer.concat(chunks).length === expected.length) resolveDone();
      };
    });
    try {
      await done;
    } finally {
      socket.close();
    }
    assert.equal(firstByte, 0x30, "read(Number) returns one byte");
    assert.equal(lengthAsString, expected.subarray(1, 3).toString("utf8"), "read(String, 3) takes 3 bytes and ends the string at the NUL");
    assert.deepEqual(Buffer.concat([Buffer.of(firstByte!), ...chunks]), expected);
    assert.ok(pieces.every((size) => size > 0 && size <= 1024), `pieces of at most 1024 bytes: ${pieces.join(", ")}`);
  });

  test("write beyond the send buffer throws and sends nothing; unsupported values throw", TEST_TIMEOUT, async () => {
    const probe = new Probe(deviceOptions());
    assert.equal(await probe.outcome(), MESSAGE_CONNECTED);
    assert.throws(() => probe.socket.write(new Uint8Array(SEND_BUFFER_BYTES - 127)), /can't write all data/);
    assert.throws(() => probe.socket.write({} as unknown as string), { name: "TypeError", message: "invalid buffer" });
    assert.throws(() => probe.socket.write(true as unknown as string), /unsupported type for write/);
    probe.socket.write(connectPacket("desktop-limits"));
    assert.deepEqual(await probe.receive(4), Buffer.from(CONNACK_ACCEPTED), "the stream is intact after the refused writes");
    probe.socket.close();
  });

  test("write before the handshake throws 'write failed' and breaks the connection", TEST_TIMEOUT, async () => {
    const mark = traced.length;
    const probe = new Probe(deviceOptions());
    assert.throws(() => probe.socket.write(Uint8Array.of(0x10)), { message: "write failed" });
    assert.equal(await probe.outcome(), MESSAGE_ERROR);
    assert.match(traced.slice(mark), /write before the TLS handshake completed/);
  });

  test("the host name or IP address is the server name when serverName is absent", TEST_TIMEOUT, async () => {
    for (const host of ["localhost", "127.0.0.1"]) {
      const probe = new Probe(deviceOptions({}, broker.port, host));
      assert.equal(await probe.outcome(), MESSAGE_CONNECTED, host);
      probe.socket.close();
    }
  });

  test("the broker dropping the connection gives message -1; inside it the socket still takes write and close", TEST_TIMEOUT, async () => {
    const socket = new SecureSocket(deviceOptions());
    const seen: Event[] = [];
    let insideTerminal: unknown[] = [];
    const ended = new Promise<void>((settle) => {
      socket.callback = (message, value) => {
        seen.push([message, value]);
        if (message === MESSAGE_CONNECTED) socket.write(connectPacket("desktop-dropped"));
        if (message === MESSAGE_READABLE) {
          socket.read(ArrayBuffer);
          broker.dropConnections();
        }
        if (message < 0) {
          insideTerminal = [socket.write(), socket.write(Uint8Array.of(0xe0, 0)), socket.close()];
          settle();
        }
      };
    });
    await ended;
    assert.deepEqual(seen.filter(([message]) => message !== MESSAGE_WRITABLE), [
      [MESSAGE_CONNECTED, undefined],
      [MESSAGE_READABLE, 4],
      [MESSAGE_DISCONNECTED, undefined],
    ]);
    assert.deepEqual(insideTerminal, [0, undefined, undefined], "write() reports nothing free, write(data) drops, close() is harmless");
    assert.throws(() => socket.write(Uint8Array.of(0xc0, 0)), { name: "TypeError", message: /cannot coerce undefined to object/ });
    assert.throws(() => socket.read(), TypeError);
  });

  test("an exception thrown by the callback becomes message -2 and closes the socket, as in securesocket.js", TEST_TIMEOUT, async () => {
    const mark = traced.length;
    const socket = new SecureSocket(deviceOptions());
    const seen: number[] = [];
    const ended = new Promise<void>((settle) => {
      socket.callback = (message) => {
        seen.push(message);
        if (message === MESSAGE_CONNECTED) throw new Error("bug in the owner");
        if (message < 0) settle();
      };
    });
    await ended;
    assert.deepEqual(seen, [MESSAGE_CONNECTED, MESSAGE_ERROR]);
    assert.match(traced.slice(mark), /exception in callback\(1\): bug in the owner/);
    assert.throws(() => socket.write(Uint8Array.of(0)), TypeError);
  });

  test("a server closing during the handshake gives -1, one resetting it gives -2, one never answering gives nothing", TEST_TIMEOUT, async () => {
    const behaviours = { close: (tcp: Socket) => tcp.end(), reset: (tcp: Socket) => tcp.resetAndDestroy(), silent: (_tcp: Socket) => undefined };
    for (const [name, behave] of Object.entries(behaviours)) {
      const accepted: Socket[] = [];
      const server = createServer((tcp) => {
        accepted.push(tcp);
        tcp.on("error", () => undefined);
        tcp.once("data", () => behave(tcp)); // after the ClientHello
      });
      await new Promise<void>((listening) => server.listen(0, "127.0.0.1", listening));
      const probe = new Probe(deviceOptions({}, (server.address() as { port: number }).port, "127.0.0.1"));
      try {
        if (name === "silent") {
          await new Promise((settle) => setTimeout(settle, 300));
          assert.deepEqual(probe.events, [], "no handshake timeout: the owner needs its own");
          probe.socket.close();
        } else {
          assert.equal(await probe.outcome(), name === "close" ? MESSAGE_DISCONNECTED : MESSAGE_ERROR, name);
        }
      } finally {
        for (const tcp of accepted) tcp.destroy();
        await new Promise<void>((closed) => server.close(() => closed()));
      }
    }
  });

  test("a refused TCP connection gives message -2", TEST_TIMEOUT, async () => {
    const unused = createServer();
    await new Promise<void>((listening) => unused.listen(0, "127.0.0.1", listening));
    const port = (unused.address() as { port: number }).port;
    await new Promise<void>((closed) => unused.close(() => closed()));
    await expectTlsError(deviceOptions({}, port, "127.0.0.1"), /ECONNREFUSED/);
  });
});

describe("Moddable's TLS limits", () => {
  test("a PEM CA certificate throws from the constructor, as X509.decode does on the device", () => {
    assert.throws(() => new SecureSocket(deviceOptions({ certificate: arrayBufferOf(fixtures.caPem) })), /x509: malformed input.*PEM/);
  });

  test("an expired CA certificate throws from the constructor (date validation failed)", () => {
    assert.throws(() => new SecureSocket(deviceOptions({ certificate: arrayBufferOf(fixtures.expiredCaDer) })), /date validation failed/);
  });

  test("protocol versions other than TLS 1.2 are refused", () => {
    assert.throws(() => new SecureSocket(deviceOptions({ protocolVersion: 0x304 })), /protocolVersion: not supported/);
    assert.throws(() => new SecureSocket(deviceOptions({ protocolVersion: 0x302 })), /TLS 1.2/);
  });

  test("a PEM client certificate or key fails the handshake", TEST_TIMEOUT, async () => {
    await expectTlsError(deviceOptions({ clientKey: arrayBufferOf(fixtures.deviceKeyPem) }), /clientKey is PEM text/);
    await expectTlsError(deviceOptions({ clientCertificates: [arrayBufferOf(fixtures.deviceCertificatePem)] }), /clientCertificates\[0\] is PEM text/);
  });

  test("an EC client key fails the handshake", TEST_TIMEOUT, async () => {
    await expectTlsError(
      deviceOptions({ clientCertificates: [arrayBufferOf(fixtures.ecDeviceCertificateDer)], clientKey: arrayBufferOf(fixtures.ecDeviceKeyDer) }),
      /clientKey is an EC key; Moddable's TLS supports RSA client keys only/,
    );
  });

  test("a PKCS#1 or encrypted client key fails the handshake", TEST_TIMEOUT, async () => {
    await expectTlsError(deviceOptions({ clientKey: arrayBufferOf(fixtures.pkcs1DeviceKeyDer) }), /clientKey is a PKCS#1 RSA key/);
    await expectTlsError(deviceOptions({ clientKey: arrayBufferOf(fixtures.encryptedDeviceKeyDer) }), /encrypted PKCS#8/);
  });

  test("a server certificate from another CA fails the handshake", TEST_TIMEOUT, async () => {
    await expectTlsError(deviceOptions({ certificate: arrayBufferOf(fixtures.otherCaDer) }), /not signed by the CA given/);
  });

  test("verify: false skips the server checks, as on the device", TEST_TIMEOUT, async () => {
    const probe = new Probe(deviceOptions({ certificate: arrayBufferOf(fixtures.otherCaDer), serverName: "iot.example.com", verify: false }));
    assert.equal(await probe.outcome(), MESSAGE_CONNECTED);
    probe.socket.close();
  });

  test("a server name the certificate does not carry fails the handshake", TEST_TIMEOUT, async () => {
    await expectTlsError(deviceOptions({ serverName: "iot.example.com" }, broker.port, "127.0.0.1"), /subjectAltName match failed for iot\.example\.com/);
  });

  test("a server that sends only its leaf certificate fails the handshake", TEST_TIMEOUT, async () => {
    // OpenSSL completes a server's chain from its trust store, so that store must not hold the issuer.
    await withBroker({ certificateChainPem: fixtures.brokerLeafOnlyPem, clientCaPem: fixtures.otherCaPem }, async (special) => {
      await expectTlsError(deviceOptions({}, special.port), /only its own certificate/);
    });
  });

  test("an expired server certificate fails the handshake", TEST_TIMEOUT, async () => {
    await withBroker({ certificateChainPem: fixtures.expiredBrokerChainPem, keyPem: fixtures.expiredBrokerKeyPem }, async (special) => {
      await expectTlsError(deviceOptions({}, special.port), /date validation failed on server certificate 0/);
    });
  });

  test("a TLS-1.3-only broker fails the handshake", TEST_TIMEOUT, async () => {
    await withBroker({ tls: { minVersion: "TLSv1.3" } }, async (special) => {
      await expectTlsError(deviceOptions({}, special.port), /protocol_version.*TLS 1\.2 only/);
    });
  });

  test("a DHE-only broker fails: no shared suite with DHE_RSA off, certificateVerify unimplemented with it on", TEST_TIMEOUT, async () => {
    const dheOnly: BrokerOptions = { tls: { ciphers: "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES128-SHA256", dhparam: "auto", maxVersion: "TLSv1.2" } };
    await withBroker(dheOnly, async (special) => {
      try {
        mergeConfig({ tls: { DHE_RSA: false } });
        await expectTlsError(deviceOptions({}, special.port), /handshake_failure/);
        mergeConfig({ tls: { DHE_RSA: true } });
        await expectTlsError(deviceOptions({}, special.port), /certificateVerify: unimplemented/);
      } finally {
        resetConfig();
      }
    });
  });

  test("the broker refuses a client certificate from an unknown CA, and a missing one", TEST_TIMEOUT, async () => {
    const failuresBefore = broker.statistics.tlsFailures;
    const clientsBefore = broker.statistics.clientsConnected;
    await expectTlsError(
      deviceOptions({ clientCertificates: [arrayBufferOf(fixtures.foreignDeviceCertificateDer)], clientKey: arrayBufferOf(fixtures.foreignDeviceKeyDer) }),
      /alert (unknown_ca|bad_certificate|certificate_unknown)/,
    );
    await expectTlsError(deviceOptions({ clientCertificates: undefined, clientKey: undefined }), /alert handshake_failure/);
    assert.equal(broker.statistics.tlsFailures, failuresBefore + 2);
    assert.equal(broker.statistics.clientsConnected, clientsBefore, "no MQTT client got through");
  });

  test("an invalid ALPN entry fails the handshake", TEST_TIMEOUT, async () => {
    await expectTlsError(deviceOptions({ applicationLayerProtocolNegotiation: [""] }), /invalid protocol/);
  });
});
