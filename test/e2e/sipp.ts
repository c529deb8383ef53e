/**
 * sipp (Debian's sip-tester) scenarios for the end-to-end test: real SIP phones against the real
 * Asterisk. Each is a complete dialogue; sipp exits 0 only if every message arrived as written,
 * so an exit code says whether the phone got what a working PBX answers.
 *
 * - register(expect): REGISTER, the 401 challenge, REGISTER with the -au/-ap credentials, then
 *   200 (good password) or a renewed 401 (wrong password).
 * - callee + calleeAnswer: registers, then answers one call with an audio SDP and waits for the
 *   caller's BYE. Asterisk's qualify OPTIONS are answered by sipp itself (-aa).
 * - caller: INVITE to a number with an audio SDP, the 401 challenge, the INVITE again with the
 *   credentials, 200 (whose SDP must carry the Elastic IP: external_media_address at work),
 *   ACK, BYE.
 * - conferenceCaller: the same into a conference room, offering audio or audio and H.264 video;
 *   the 200's SDP must carry the Elastic IP and, for the video offer, an accepted H.264 stream
 *   (an `m=video` line with a port, H264 in its rtpmap), for the audio offer no video at all. It
 *   stays in the room for a while before it hangs up, so that two callers meet there.
 */

const HEADERS_REGISTER = (cseq: number, auth: boolean) => `
      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: <sip:[service]@[remote_ip]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]>
      Call-ID: [call_id]
      CSeq: ${cseq} REGISTER
      Contact: <sip:[service]@[local_ip]:[local_port]>${auth ? '\n      [authentication]' : ''}
      Max-Forwards: 70
      Expires: 300
      User-Agent: pbx-agent-e2e
      Content-Length: 0
`;

const REGISTER_STEPS = `
  <send retrans="500"><![CDATA[${HEADERS_REGISTER(1, false)}
    ]]></send>
  <recv response="401" auth="true"/>
  <send retrans="500"><![CDATA[${HEADERS_REGISTER(2, true)}
    ]]></send>`;

const scenario = (name: string, body: string) => `<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="${name}">${body}
</scenario>
`;

export function register(expect: 200 | 401): string {
  return scenario(`register-${expect}`, `${REGISTER_STEPS}
  <recv response="${expect}"/>`);
}

const SDP = `v=0
      o=sipp 1 1 IN IP4 [local_ip]
      s=pbx-agent-e2e
      c=IN IP4 [local_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000`;

/**
 * The callee registers (this scenario, which then waits), and answers the call Asterisk places to
 * it in calleeAnswer(), sipp's out-of-call scenario (-oocsf): Asterisk's INVITE belongs to a new
 * dialogue, which a scenario that started with REGISTER cannot match. The answer writes `marker`
 * once the caller has hung up.
 */
export function callee(waitMs: number): string {
  return scenario('callee', `${REGISTER_STEPS}
  <recv response="200"/>
  <pause milliseconds="${waitMs}"/>`);
}

export function calleeAnswer(marker: string): string {
  return scenario('callee-answer', `
  <recv request="INVITE"/>
  <send><![CDATA[
      SIP/2.0 180 Ringing
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[service]@[local_ip]:[local_port]>
      Content-Length: 0

    ]]></send>
  <send retrans="500"><![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[service]@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

      ${SDP}

    ]]></send>
  <recv request="ACK"/>
  <recv request="BYE"/>
  <send><![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]></send>
  <nop><action><exec command="touch ${marker}"/></action></nop>`);
}

const INVITE = (cseq: number, auth: boolean, sdp = SDP) => `
      INVITE sip:[field0]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: <sip:[service]@[remote_ip]>;tag=[pid]SIPpTag09[call_number]
      To: <sip:[field0]@[remote_ip]>
      Call-ID: [call_id]
      CSeq: ${cseq} INVITE
      Contact: <sip:[service]@[local_ip]:[local_port]>${auth ? '\n      [authentication]' : ''}
      Max-Forwards: 70
      User-Agent: pbx-agent-e2e
      Content-Type: application/sdp
      Content-Length: [len]

      ${sdp}
`;

/**
 * Audio and video as a softphone with H.264 offers it (profile-level-id 42e01f: Constrained
 * Baseline 3.1, packetization-mode 1; RFC 6184). The video port is fixed: sipp opens no media.
 */
const SDP_WITH_VIDEO = `${SDP}
      m=video 6020 RTP/AVP 99
      a=rtpmap:99 H264/90000
      a=fmtp:99 profile-level-id=42e01f;packetization-mode=1`;

/** Calls the number in field 0 of the -inf file; `externalAddress` must be in the answer's SDP. */
export function caller(externalAddress: string): string {
  const ip = externalAddress.replace(/\./g, '\\.');
  return scenario('caller', `
  <send retrans="500"><![CDATA[${INVITE(1, false)}
    ]]></send>
  <recv response="100" optional="true"/>
  <recv response="401" auth="true"/>
  <send><![CDATA[
      ACK sip:[field0]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: <sip:[service]@[remote_ip]>;tag=[pid]SIPpTag09[call_number]
      To: <sip:[field0]@[remote_ip]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]></send>
  <send retrans="500"><![CDATA[${INVITE(2, true)}
    ]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rrs="true">
    <action>
      <ereg regexp="c=IN IP4 ${ip}" search_in="body" check_it="true" assign_to="sdp_address"/>
    </action>
  </recv>
  <Reference variables="sdp_address"/>
  <send><![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: <sip:[service]@[remote_ip]>;tag=[pid]SIPpTag09[call_number]
      To: <sip:[field0]@[remote_ip]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]></send>
  <pause milliseconds="500"/>
  <send retrans="500"><![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: <sip:[service]@[remote_ip]>;tag=[pid]SIPpTag09[call_number]
      To: <sip:[field0]@[remote_ip]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 3 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]></send>
  <recv response="200"/>`);
}

/**
 * Joins the room whose number is in field 0 of the -inf file, offering H.264 video or audio only,
 * stays `stayMs`, then hangs up. The 200's SDP is checked: the Elastic IP, the audio stream, and
 * an accepted H.264 stream exactly when video was offered.
 */
export function conferenceCaller(externalAddress: string, video: boolean, stayMs: number): string {
  const ip = externalAddress.replace(/\./g, '\\.');
  const videoChecks = video
    ? `
      <ereg regexp="m=video [1-9][0-9]* RTP/AVP [0-9]+" search_in="body" check_it="true" assign_to="video_line"/>
      <ereg regexp="a=rtpmap:[0-9]+ H264/90000" search_in="body" check_it="true" assign_to="h264"/>`
    : `
      <ereg regexp="m=video" search_in="body" check_it_inverse="true" assign_to="no_video"/>`;
  const references = video ? 'sdp_address,audio_line,video_line,h264' : 'sdp_address,audio_line,no_video';
  return scenario(`conference-${video ? 'video' : 'audio'}`, `
  <send retrans="500"><![CDATA[${INVITE(1, false, video ? SDP_WITH_VIDEO : SDP)}
    ]]></send>
  <recv response="100" optional="true"/>
  <recv response="401" auth="true"/>
  <send><![CDATA[
      ACK sip:[field0]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: <sip:[service]@[remote_ip]>;tag=[pid]SIPpTag09[call_number]
      To: <sip:[field0]@[remote_ip]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]></send>
  <send retrans="500"><![CDATA[${INVITE(2, true, video ? SDP_WITH_VIDEO : SDP)}
    ]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rrs="true">
    <action>
      <ereg regexp="c=IN IP4 ${ip}" search_in="body" check_it="true" assign_to="sdp_address"/>
      <ereg regexp="m=audio [1-9][0-9]* RTP/AVP" search_in="body" check_it="true" assign_to="audio_line"/>${videoChecks}
      <log message="200 OK SDP: [last_message]"/>
    </action>
  </recv>
  <Reference variables="${references}"/>
  <send><![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: <sip:[service]@[remote_ip]>;tag=[pid]SIPpTag09[call_number]
      To: <sip:[field0]@[remote_ip]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]></send>
  <pause milliseconds="${stayMs}"/>
  <send retrans="500"><![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: <sip:[service]@[remote_ip]>;tag=[pid]SIPpTag09[call_number]
      To: <sip:[field0]@[remote_ip]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 3 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]></send>
  <recv response="200"/>`);
}
