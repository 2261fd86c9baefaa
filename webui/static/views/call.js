// The call view: a 1v1 call room by name. The page opens a call session of
// its own (GET api/calls/events: the session, and its seat in a room, last
// as long as that stream), joins a room, and trades offers, answers and ICE
// candidates with the other page through its node; the audio and video go
// browser to browser, or through the node's TURN server.
import { h } from '../dom.js';
import { t } from '../i18n/index.js';
import { sendJSON } from '../api.js';

// PENDING_ROOM is where another view (the Mesh view's "Call" button) leaves
// a room for this view to join when it opens.
export const PENDING_ROOM = 'catnest.call.room';
const RELAY_KEY = 'catnest.call.relay';

// ROOM_RE mirrors calls.CheckRoom, so that a bad name is caught before the
// request.
const ROOM_RE = /^[\p{L}\p{N}][\p{L}\p{N}._-]{0,63}$/u;

function stored(key) {
  try {
    return localStorage.getItem(key);
  } catch {
    return null;
  }
}

export default {
  id: 'call',
  title: 'nav.call',

  // available says whether the node runs the call service.
  async available() {
    const res = await fetch('api/calls/ice', { headers: { Accept: 'application/json' } });
    return res.ok;
  },

  mount(root, { onLang }) {
    let session = null; // this page's session id, from the stream
    let ice = [];
    let room = ''; // the room joined or being joined
    let state = 'idle'; // idle | joining | waiting | connected | full
    let peer = null; // {node, name}
    let error = '';
    let pc = null;
    let local = null; // MediaStream, or null without camera and microphone
    let pending = []; // candidates that came before the offer or answer
    let queue = Promise.resolve(); // events are handled one after another
    let want = null; // a room to join once the session is known
    let relayOnly = stored(RELAY_KEY) === '1';
    try {
      want = sessionStorage.getItem(PENDING_ROOM);
      sessionStorage.removeItem(PENDING_ROOM);
    } catch {
      // no storage
    }

    // The page is built once, so that the video elements keep playing;
    // render only updates it.
    const input = h('input', { id: 'call-room', type: 'text', maxlength: 64, autocomplete: 'off', required: true });
    const joinBtn = h('button', { id: 'call-join', type: 'submit', class: 'btn btn-primary' });
    const leaveBtn = h('button', { id: 'call-leave', type: 'button', class: 'btn' });
    const relayBox = h('input', { id: 'call-relay', type: 'checkbox' });
    const relayText = h('span', {});
    const label = h('label', { for: 'call-room' });
    const form = h('form', { class: 'call-form', id: 'call-form' }, label, input, joinBtn, leaveBtn);
    const status = h('p', { id: 'call-status', class: 'call-status', role: 'status', 'aria-live': 'polite' });
    const remoteVideo = h('video', { id: 'call-remote', class: 'call-remote', autoplay: true, playsinline: true });
    const localVideo = h('video', { id: 'call-local', class: 'call-local', autoplay: true, playsinline: true });
    localVideo.muted = true;
    const stats = h('p', { id: 'call-stats', class: 'muted call-stats' });
    const title = h('h1', {});
    const hint = h('p', { class: 'muted' });
    root.replaceChildren(
      h('div', { class: 'view-head' }, title),
      h('section', { class: 'card call-card' }, hint, form,
        h('label', { class: 'call-relay' }, relayBox, relayText), status, stats),
      h('div', { class: 'call-videos' }, remoteVideo, localVideo));

    const render = () => {
      title.textContent = t('call.title');
      hint.textContent = t('call.hint');
      label.textContent = t('call.room');
      input.placeholder = t('call.room.placeholder');
      joinBtn.textContent = t('call.join');
      leaveBtn.textContent = t('call.leave');
      const inRoom = state !== 'idle' && state !== 'full';
      joinBtn.disabled = inRoom || !session;
      leaveBtn.disabled = !inRoom;
      input.disabled = inRoom;
      const hasTurn = ice.some((s) => [].concat(s.urls).some((u) => /^turns?:/.test(u)));
      relayBox.disabled = inRoom || !hasTurn;
      relayBox.checked = relayOnly && hasTurn;
      relayText.textContent = t(hasTurn ? 'call.relay' : 'call.relay.none');
      status.dataset.state = state;
      const who = peer ? peer.name || peer.node.slice(0, 8) : '';
      status.textContent = error || t(`call.state.${state}`, { room, name: who });
      status.classList.toggle('form-error', !!error);
    };

    const signal = (sig) => sendJSON('POST', `api/calls/${encodeURIComponent(room)}/signal`, { session, ...sig })
      .catch((err) => console.warn('call signal', err.message));

    const closePeer = () => {
      if (pc) pc.close();
      pc = null;
      pending = [];
      remoteVideo.srcObject = null;
      delete stats.dataset.frames;
      delete stats.dataset.route;
      stats.textContent = '';
    };

    const stopLocal = () => {
      if (local) for (const tr of local.getTracks()) tr.stop();
      local = null;
      localVideo.srcObject = null;
    };

    // ensureLocal asks for the camera and microphone once; without them
    // the page still receives the other's.
    const ensureLocal = async () => {
      if (local) return;
      for (const c of [{ audio: true, video: { width: { ideal: 640 }, height: { ideal: 360 } } }, { audio: true }]) {
        try {
          local = await navigator.mediaDevices.getUserMedia(c);
          localVideo.srcObject = local;
          return;
        } catch (err) {
          console.warn('getUserMedia', err.name);
        }
      }
    };

    const startPeer = (initiator) => {
      closePeer();
      pc = new RTCPeerConnection({ iceServers: ice, iceTransportPolicy: relayOnly ? 'relay' : 'all' });
      const mine = pc;
      pc.onicecandidate = (e) => {
        if (e.candidate && mine === pc) signal({ type: 'candidate', candidate: e.candidate.toJSON() });
      };
      pc.ontrack = (e) => {
        if (mine !== pc) return;
        remoteVideo.srcObject = e.streams[0] || new MediaStream([e.track]);
      };
      pc.onconnectionstatechange = () => {
        if (mine === pc && pc.connectionState === 'failed') {
          error = t('call.failed');
          render();
        }
      };
      if (local) {
        for (const tr of local.getTracks()) pc.addTrack(tr, local);
      } else {
        pc.addTransceiver('audio', { direction: 'recvonly' });
        pc.addTransceiver('video', { direction: 'recvonly' });
      }
      if (initiator) {
        return (async () => {
          const offer = await mine.createOffer();
          await mine.setLocalDescription(offer);
          await signal({ type: 'offer', sdp: offer.sdp });
        })();
      }
      return null;
    };

    const addPending = async () => {
      for (const c of pending.splice(0)) await pc.addIceCandidate(c).catch((err) => console.warn('candidate', err.message));
    };

    const handle = async (ev) => {
      if (ev.type === 'session') {
        session = ev.session;
        ice = ev.ice_servers || [];
        // A new stream means a new session: the old one left its room.
        const again = state !== 'idle' && state !== 'full' ? room : want;
        want = null;
        if (again) {
          state = 'idle';
          closePeer();
          join(again);
        }
        render();
        return;
      }
      if (ev.room !== room) return;
      switch (ev.type) {
        case 'joined':
          if (state === 'joining') state = 'waiting';
          break;
        case 'other_joined':
          peer = ev.peer;
          state = 'connected';
          error = '';
          render();
          await startPeer(ev.initiator);
          break;
        case 'other_left':
          closePeer();
          peer = null;
          state = 'waiting';
          error = '';
          break;
        case 'full':
          closePeer();
          peer = null;
          state = 'full';
          break;
        case 'offer':
          if (!pc) startPeer(false);
          await pc.setRemoteDescription({ type: 'offer', sdp: ev.sdp });
          await addPending();
          {
            const answer = await pc.createAnswer();
            await pc.setLocalDescription(answer);
            await signal({ type: 'answer', sdp: answer.sdp });
          }
          break;
        case 'answer':
          if (pc) {
            await pc.setRemoteDescription({ type: 'answer', sdp: ev.sdp });
            await addPending();
          }
          break;
        case 'candidate':
          if (pc && pc.remoteDescription) await pc.addIceCandidate(ev.candidate).catch((err) => console.warn('candidate', err.message));
          else pending.push(ev.candidate);
          break;
        default:
      }
      render();
    };

    const join = async (name) => {
      error = '';
      if (!ROOM_RE.test(name)) {
        error = t('call.badRoom');
        render();
        return;
      }
      input.value = name;
      if (!session) {
        want = name;
        return;
      }
      room = name;
      state = 'joining';
      peer = null;
      render();
      await ensureLocal();
      try {
        const res = await sendJSON('POST', `api/calls/${encodeURIComponent(name)}/join`, { session });
        ice = res.ice_servers || ice;
        if (res.state === 'full') {
          state = 'full';
        } else if (state === 'joining') {
          state = res.peer ? 'connected' : 'waiting';
          if (res.peer) peer = res.peer;
        }
      } catch (err) {
        state = 'idle';
        error = t('call.error', { msg: err.message });
      }
      render();
    };

    const leave = async () => {
      const was = room;
      closePeer();
      stopLocal();
      state = 'idle';
      peer = null;
      render();
      if (!session || !was) return;
      await sendJSON('POST', `api/calls/${encodeURIComponent(was)}/leave`, { session })
        .catch((err) => console.warn('call leave', err.message));
    };

    form.addEventListener('submit', (e) => {
      e.preventDefault();
      join(input.value.trim());
    });
    leaveBtn.addEventListener('click', leave);
    relayBox.addEventListener('change', () => {
      relayOnly = relayBox.checked;
      try {
        localStorage.setItem(RELAY_KEY, relayOnly ? '1' : '0');
      } catch {
        // not remembered
      }
    });

    // The call's health: frames decoded of the other's video, and whether
    // the media goes direct or through TURN.
    const poll = setInterval(async () => {
      if (!pc) return;
      const mine = pc;
      const report = await mine.getStats().catch(() => null);
      if (!report || mine !== pc) return;
      let frames = 0;
      let pair = null;
      const byID = new Map();
      report.forEach((s) => {
        byID.set(s.id, s);
        if (s.type === 'inbound-rtp' && s.kind === 'video') frames = s.framesDecoded || 0;
        if (s.type === 'transport' && s.selectedCandidatePairId) pair = s.selectedCandidatePairId;
      });
      const p = pair && byID.get(pair);
      let route = '';
      if (p) {
        const types = [byID.get(p.localCandidateId), byID.get(p.remoteCandidateId)].map((c) => c && c.candidateType);
        route = types.includes('relay') ? 'relay' : 'direct';
      }
      stats.dataset.frames = String(frames);
      if (route) stats.dataset.route = route;
      stats.textContent = route ? t('call.stats', { route: t(`call.route.${route}`), frames }) : '';
    }, 500);

    const es = new EventSource('api/calls/events');
    es.addEventListener('call', (e) => {
      let ev;
      try {
        ev = JSON.parse(e.data);
      } catch {
        return;
      }
      queue = queue.then(() => handle(ev)).catch((err) => {
        console.error('call event', ev.type, err);
      });
    });

    render();
    const offLang = onLang(render);
    return () => {
      offLang();
      clearInterval(poll);
      es.close(); // ends the session: the node leaves the room
      closePeer();
      stopLocal();
    };
  },
};
