import assert from 'node:assert/strict';
import { diffPjsipObjects, parsePjsipObjects } from '../agent/plan/objects.js';

const transport = (extra = '') => `[transport-udp]\ntype=transport\nprotocol=udp\nbind=0.0.0.0:5060\nexternal_media_address=203.0.113.10\nexternal_signaling_address=203.0.113.10\nlocal_net=172.31.0.0/16\n${extra}`;
const ext = (n: string, maxContacts = 3) =>
  `[${n}]\ntype=endpoint\ncontext=internal\naors=${n}\nauth=${n}\n\n[${n}]\ntype=auth\nauth_type=md5\nusername=${n}\nmd5_cred=${'a'.repeat(32)}\n\n[${n}]\ntype=aor\nmax_contacts=${maxContacts}\n`;

describe('plan: object changes in pjsip.conf', () => {
  it('parses sections of the same name but different type as separate objects', () => {
    assert.deepEqual(
      parsePjsipObjects(ext('1001')).map((o) => [o.name, o.type]),
      [['1001', 'endpoint'], ['1001', 'auth'], ['1001', 'aor']],
    );
  });

  it('names the extensions added, changed (in any of endpoint, auth, aor) and removed', () => {
    const before = transport() + ext('1001') + ext('1002') + ext('1003');
    const after = transport() + ext('1001') + ext('1002', 5) + ext('1004');
    assert.deepEqual(diffPjsipObjects(before, after), { added: ['1004'], changed: ['1002'], removed: ['1003'], restartReasons: [] });
  });

  it('does not call the last extension changed because another one now follows it', () => {
    const before = transport() + '\n' + ext('1001');
    const after = before + '\n' + ext('1002');
    assert.deepEqual(diffPjsipObjects(before, after), { added: ['1002'], changed: [], removed: [], restartReasons: [] });
  });

  it('applies a new Elastic IP or local_net with a reload, but asks for a restart when bind or protocol change', () => {
    const live = transport().replace(/203\.0\.113\.10/g, '198.51.100.7').replace('172.31.0.0/16', '10.0.0.0/16');
    assert.deepEqual(diffPjsipObjects(transport(), live).restartReasons, []);
    const rebound = transport().replace('bind=0.0.0.0:5060', 'bind=0.0.0.0:5080');
    assert.deepEqual(diffPjsipObjects(transport(), rebound).restartReasons, ['transport transport-udp changes bind']);
  });

  it('asks for a restart when a transport is added or removed', () => {
    const tcp = '[transport-tcp]\ntype=transport\nprotocol=tcp\nbind=0.0.0.0:5060\n';
    assert.deepEqual(diffPjsipObjects(transport(), transport() + tcp).restartReasons, ['transport transport-tcp is new']);
    assert.deepEqual(diffPjsipObjects(transport() + tcp, transport()).restartReasons, ['transport transport-tcp is removed']);
  });
});
