// Times `module reload <module>.so` as Asterisk runs it for an AMI Command action: the answer comes
// when the reload is done, however long it takes. (`asterisk -rx` stops waiting after 60 s without
// output, main/asterisk.c, and a pbx_config reload at 10,000 extensions takes longer, after which
// every other reload is refused as "already in progress".)
// Run in the container's network: node ami-reload-timer.mjs SECRET MODULE RUNS [FILE_TO_TOUCH]
// Prints one line per run: milliseconds, a tab, Asterisk's answer.
import { connect } from 'node:net';
import { utimesSync } from 'node:fs';

const [secret, module, runsText, touch] = process.argv.slice(2);
const runs = Number(runsText);
const socket = connect(5038, '127.0.0.1');
socket.setEncoding('utf8');
let buffer = '';
let waiting;
socket.on('data', (d) => {
  buffer += d;
  waiting?.();
});
socket.on('error', (e) => {
  process.stderr.write(`${e}\n`);
  process.exit(1);
});

/** The message of `actionId`, once it has ended (a blank line). */
function answer(actionId) {
  return new Promise((resolve) => {
    waiting = () => {
      const at = buffer.indexOf(`ActionID: ${actionId}\r\n`);
      if (at < 0) return;
      const start = buffer.lastIndexOf('Response:', at);
      const end = buffer.indexOf('\r\n\r\n', at);
      if (end < 0) return;
      const message = buffer.slice(start, end);
      buffer = buffer.slice(end + 4);
      waiting = undefined;
      resolve(message);
    };
    waiting();
  });
}

const send = (lines) => socket.write(`${lines.join('\r\n')}\r\n\r\n`);
send(['Action: Login', 'ActionID: login', 'Username: pbx-agent', `Secret: ${secret}`, 'Events: off']);
const login = await answer('login');
if (!/Response: Success/.test(login)) {
  process.stderr.write(`login refused: ${login}\n`);
  process.exit(1);
}
for (let i = 0; i < runs; i++) {
  if (touch) utimesSync(touch, new Date(), new Date());
  const t0 = performance.now();
  send(['Action: Command', `ActionID: reload-${i}`, `Command: module reload ${module}.so`]);
  const message = await answer(`reload-${i}`);
  const ms = performance.now() - t0;
  const output = message
    .split('\r\n')
    .filter((l) => l.startsWith('Output: '))
    .map((l) => l.slice('Output: '.length))
    .join(' ');
  process.stdout.write(`${ms.toFixed(1)}\t${output || message.replace(/\r\n/g, ' ')}\n`);
  await new Promise((r) => setTimeout(r, 500));
}
send(['Action: Logoff', 'ActionID: logoff']);
socket.end();
