import assert from 'node:assert/strict';
import { jsonOf, MAX_JSON_BYTES, planLiveObjects, type LiveObjectEdit } from '../agent/plan/live-objects.js';
import { comparePjsip } from '../agent/plan/objects.js';

const transport = (address = '203.0.113.10') =>
  `[transport-udp]\ntype=transport\nprotocol=udp\nbind=0.0.0.0:5060\nexternal_media_address=${address}\nexternal_signaling_address=${address}\nlocal_net=172.31.0.0/16\n`;
const ext = (n: string, name = `User ${n}`, codecs = ['opus', 'ulaw']) =>
  `\n[${n}]\ntype=endpoint\ncontext=internal\ncallerid="${name}" <${n}>\ndisallow=all\n${codecs.map((c) => `allow=${c}\n`).join('')}aors=${n}\nauth=${n}\n` +
  `\n[${n}]\ntype=auth\nauth_type=md5\nusername=${n}\nrealm=asterisk\nmd5_cred=${'a'.repeat(32)}\n` +
  `\n[${n}]\ntype=aor\nmax_contacts=3\nqualify_frequency=30\n`;
const pbx = (...exts: string[]) => transport() + exts.join('');

const LOCK = 'f'.repeat(32);
const summary = (edits: LiveObjectEdit[]) => edits.map((e) => `${e.kind} ${e.type} ${e.id}`);

describe('plan: live objects instead of a res_pjsip reload', () => {
  it('adds an extension as auth written, aor and endpoint created through sorcery, then the endpoint rewritten as pjsip.conf has it', () => {
    const plan = planLiveObjects(comparePjsip(pbx(ext('1001')), pbx(ext('1001'), ext('1002'))), undefined, 20, LOCK);
    assert.ok('edits' in plan, JSON.stringify(plan));
    assert.deepEqual(summary(plan.edits), ['write auth 1002', 'create aor 1002', 'create endpoint 1002', 'write endpoint 1002']);
    assert.deepEqual(plan.record, { added: ['1002'], changed: [], removed: [] });
    const create = plan.edits[2] as Extract<LiveObjectEdit, { kind: 'create' }>;
    // Repeated allow lines go to ARI as repeated fields, in order, after disallow.
    assert.deepEqual(create.fields.filter((f) => f.attribute === 'allow' || f.attribute === 'disallow').map((f) => `${f.attribute}=${f.value}`), ['disallow=all', 'allow=opus', 'allow=ulaw']);
  });

  it('writes only the objects of a changed extension that differ, as JSON in their pjsip.conf order', () => {
    const plan = planLiveObjects(comparePjsip(pbx(ext('1001')), pbx(ext('1001', 'Alice', ['g722']))), undefined, 20, LOCK);
    assert.ok('edits' in plan);
    assert.deepEqual(summary(plan.edits), ['write endpoint 1001']);
    const write = plan.edits[0] as Extract<LiveObjectEdit, { kind: 'write' }>;
    assert.equal(write.json, '{"context":"internal","callerid":"\\"Alice\\" <1001>","disallow":"all","allow":"g722","aors":"1001","auth":"1001"}');
    assert.deepEqual(plan.record, { added: [], changed: ['1001'], removed: [] });
  });

  it('joins repeated allow lines into one comma list, the one form a JSON object can hold', () => {
    const [endpoint] = [comparePjsip('', ext('1001')).object('endpoint', '1001')!];
    assert.match(jsonOf(endpoint) as string, /"allow":"opus,ulaw"/);
  });

  it('refuses an object whose JSON would not fit in one AMI line', () => {
    const long = comparePjsip('', ext('1001', 'x'.repeat(MAX_JSON_BYTES))).object('endpoint', '1001')!;
    const result = jsonOf(long);
    assert.equal(typeof result, 'object');
    assert.match((result as { reason: string }).reason, /too long for an AMI line/);
  });

  it('deletes an extension that was created live, aor first, and forgets it', () => {
    const live = { added: ['1002'], changed: [], removed: [], since: '2026-12-01T00:00:00.000Z' };
    const plan = planLiveObjects(comparePjsip(pbx(ext('1001'), ext('1002')), pbx(ext('1001'))), live, 20, LOCK);
    assert.ok('edits' in plan);
    assert.deepEqual(summary(plan.edits), ['delete aor 1002', 'delete endpoint 1002', 'delete auth 1002']);
    assert.deepEqual(plan.record, { added: [], changed: [], removed: [] });
    assert.deepEqual(plan.lockedOut, []);
  });

  it('locks out an extension that pjsip.conf defined when Asterisk loaded it: its auth takes no password until the fold', () => {
    const plan = planLiveObjects(comparePjsip(pbx(ext('1001'), ext('1002')), pbx(ext('1001'))), undefined, 20, LOCK);
    assert.ok('edits' in plan);
    assert.deepEqual(summary(plan.edits), ['write auth 1002']);
    const write = plan.edits[0] as Extract<LiveObjectEdit, { kind: 'write' }>;
    assert.equal(write.json, `{"auth_type":"md5","username":"1002","realm":"asterisk","md5_cred":"${LOCK}"}`);
    assert.deepEqual(plan.record, { added: [], changed: [], removed: ['1002'] });
    assert.deepEqual(plan.lockedOut, ['1002']);
  });

  it('brings back a locked-out extension before the fold by overriding all three of its file objects', () => {
    const live = { added: [], changed: [], removed: ['1002'], since: '2026-12-01T00:00:00.000Z' };
    const plan = planLiveObjects(comparePjsip(pbx(ext('1001')), pbx(ext('1001'), ext('1002'))), live, 20, LOCK);
    assert.ok('edits' in plan);
    assert.deepEqual(summary(plan.edits), ['write auth 1002', 'write aor 1002', 'write endpoint 1002']);
    assert.deepEqual(plan.record, { added: [], changed: ['1002'], removed: [] });
  });

  it('keeps an extension created live among the added when it changes again', () => {
    const live = { added: ['1002'], changed: [], removed: [], since: '2026-12-01T00:00:00.000Z' };
    const plan = planLiveObjects(comparePjsip(pbx(ext('1001'), ext('1002')), pbx(ext('1001'), ext('1002', 'Bob'))), live, 20, LOCK);
    assert.ok('edits' in plan);
    assert.deepEqual(plan.record, { added: ['1002'], changed: [], removed: [] });
  });

  it('reloads when more extensions change than live_objects.max_extensions', () => {
    const plan = planLiveObjects(comparePjsip(pbx(ext('1001')), pbx(ext('1001'), ext('1002'), ext('1003'))), undefined, 1, LOCK);
    assert.ok('reason' in plan);
    assert.match(plan.reason, /2 extensions change \(more than live_objects\.max_extensions, 1\)/);
  });

  it('reloads when a transport changes along with an extension', () => {
    const before = pbx(ext('1001'));
    const after = transport('198.51.100.7') + ext('1001') + ext('1002');
    const plan = planLiveObjects(comparePjsip(before, after), undefined, 20, LOCK);
    assert.ok('reason' in plan);
    assert.match(plan.reason, /transport/);
  });
});
