/* A publisher's track received in C (issue 3): SRTP datagrams in, whole encoded frames out.
 *
 * Track does, per packet, what these Python objects do, and is tested against them packet by
 * packet (tests/media_relay/test_track.py):
 *
 * - aiortc's StreamStatistics (rtcrtpreceiver.py): the counts and the jitter the receiver reports
 *   in RTCP (aiortc_compat._TrackStatistics reads them here);
 * - reassembly.NackTracker: lost packets asked for again until they come or are too old;
 * - depayloading as aiortc's vp8_depayload and h264_depayload do;
 * - reassembly.FrameAssembler: frames released on their last packet, holes waited on for a bounded
 *   time, then given up on, and nothing but a keyframe forwarded after one.
 *
 * Python sees whole frames only. Track.receive and Track.add return None when a packet leaves
 * nothing for Python to do (most of a video frame's packets), else a tuple of what to do:
 * (frames, lost, keyframe requests, frame end). They call no Python code, so the track is never
 * entered twice.
 */

#include "_datapath.h"

#include <structmember.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_REORDER 64   /* reassembly.FrameAssembler.MAX_REORDER */
#define MAX_GAP 512      /* reassembly.NackTracker.MAX_GAP */
#define MAX_LOST 8192    /* lost packets remembered at most; the oldest are given up first */
#define NTP_EPOCH_OFFSET 2208988800.0

enum { CODEC_NONE = 0, CODEC_VP8, CODEC_H264, CODEC_OTHER };

typedef struct {
    int kind;
    long clock_rate;
    PyObject *name; /* str, as in reassembly.CodecInfo */
} Codec;

typedef struct {
    PyObject *payload; /* bytes; NULL: no packet here */
    PyObject *data;    /* the depayloaded bytes, or NULL when they are payload[skip:] */
    Py_ssize_t skip;
    long long seq;     /* extended */
    uint32_t timestamp;
    int marker;
    int payload_type;
} Slot;

typedef struct {
    long long seq;
    double first_lost;
    double last_asked;
    int tries;
} Lost;

typedef struct {
    int bits;
    int started;
    long long last;
} Unwrapper; /* reassembly.Unwrapper */

static long long unwrap(Unwrapper *u, long long value) {
    long long modulus = 1LL << u->bits;
    if (!u->started) {
        u->started = 1;
        u->last = value;
        return value;
    }
    long long delta = ((value - u->last) % modulus + modulus) % modulus;
    if (delta >= modulus / 2)
        delta -= modulus;
    long long extended = u->last + delta;
    if (delta > 0)
        u->last = extended;
    return extended;
}

typedef struct {
    PyObject_HEAD
    int video;
    Codec codecs[128];
    double max_wait;
    double keyframe_after;
    long long capacity;
    /* the assembler */
    Slot *slots; /* capacity of them, at extended sequence number modulo capacity */
    long long slot_count;
    Unwrapper seq;
    Unwrapper ts;
    int has_next;
    long long next;
    long long highest;
    int has_origin;
    long long ts_origin;
    int blocked;
    double blocked_since;
    int has_removed;
    uint32_t removed_ts;
    int asked_keyframe;
    int emitted_since_restart;
    int waiting_keyframe;
    long long frames, frames_skipped, holes_skipped, packets_late, packets;
    /* the NACK tracker */
    int nack;
    double retry_interval;
    int max_tries;
    double max_age;
    Unwrapper nack_seq;
    int has_nack_highest;
    long long nack_highest;
    Lost *lost;
    Py_ssize_t lost_count;
    Py_ssize_t lost_room;
    long long lost_total, recovered, given_up, nacks_sent;
    /* the statistics of the SSRC the track is bound to */
    int has_ssrc;
    uint32_t ssrc;
    long stats_clock_rate;
    int has_base;
    unsigned int base_seq;
    int has_max;
    unsigned int max_seq;
    long long cycles, packets_received, jitter_q4;
    long long last_arrival;
    long long last_timestamp;
    long long frame_bytes;
    /* what one call leaves Python to do */
    PyObject *out_frames;   /* list or NULL */
    PyObject *out_lost;     /* list or NULL */
    long out_keyframes;
    PyObject *out_frame_end; /* tuple or NULL */
} Track;

static double monotonic_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static double wall_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int read_now(PyObject *now_object, double *now) {
    if (now_object == NULL || now_object == Py_None) {
        *now = monotonic_now();
        return 0;
    }
    *now = PyFloat_AsDouble(now_object);
    return (*now == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

/* -- what Python is left to do --------------------------------------------------------------- */

static int note_lost(Track *self, long long seq) {
    if (self->out_lost == NULL && (self->out_lost = PyList_New(0)) == NULL)
        return -1;
    PyObject *number = PyLong_FromLongLong(seq & 0xFFFF);
    if (number == NULL)
        return -1;
    int appended = PyList_Append(self->out_lost, number);
    Py_DECREF(number);
    return appended;
}

static void clear_events(Track *self) {
    Py_CLEAR(self->out_frames);
    Py_CLEAR(self->out_lost);
    Py_CLEAR(self->out_frame_end);
    self->out_keyframes = 0;
}

static PyObject *take_events(Track *self) {
    if (self->out_frames == NULL && self->out_lost == NULL && self->out_keyframes == 0 &&
        self->out_frame_end == NULL)
        Py_RETURN_NONE;
    if (self->out_lost != NULL)
        self->nacks_sent += PyList_GET_SIZE(self->out_lost);
    PyObject *events = Py_BuildValue(
        "(OOlO)", self->out_frames ? self->out_frames : Py_None, self->out_lost ? self->out_lost : Py_None,
        self->out_keyframes, self->out_frame_end ? self->out_frame_end : Py_None);
    clear_events(self);
    return events;
}

/* -- the NACK tracker ----------------------------------------------------------------------- */

static Py_ssize_t find_lost(Track *self, long long seq) {
    Py_ssize_t low = 0, high = self->lost_count;
    while (low < high) {
        Py_ssize_t middle = (low + high) / 2;
        if (self->lost[middle].seq < seq)
            low = middle + 1;
        else
            high = middle;
    }
    return (low < self->lost_count && self->lost[low].seq == seq) ? low : -1;
}

static void remove_lost(Track *self, Py_ssize_t at, Py_ssize_t count) {
    memmove(self->lost + at, self->lost + at + count, (self->lost_count - at - count) * sizeof(Lost));
    self->lost_count -= count;
}

static int append_lost(Track *self, long long seq, double now) {
    if (self->lost_count == MAX_LOST) {
        remove_lost(self, 0, 1);
        self->given_up++;
    }
    if (self->lost_count == self->lost_room) {
        Py_ssize_t room = self->lost_room ? self->lost_room * 2 : 64;
        Lost *grown = PyMem_Realloc(self->lost, room * sizeof(Lost));
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->lost = grown;
        self->lost_room = room;
    }
    self->lost[self->lost_count++] = (Lost){.seq = seq, .first_lost = now, .last_asked = now, .tries = 1};
    return 0;
}

/* NackTracker.add; the newly lost go to out_lost. */
static int nack_add(Track *self, unsigned int sequence, double now) {
    long long ext = unwrap(&self->nack_seq, sequence);
    if (!self->has_nack_highest || ext - self->nack_highest > MAX_GAP || self->nack_highest - ext > MAX_GAP) {
        self->has_nack_highest = 1;
        self->nack_highest = ext;
        self->lost_count = 0;
        return 0;
    }
    if (ext <= self->nack_highest) {
        Py_ssize_t at = find_lost(self, ext);
        if (at >= 0) {
            remove_lost(self, at, 1);
            self->recovered++;
        }
        return 0;
    }
    for (long long seq = self->nack_highest + 1; seq < ext; seq++) {
        self->lost_total++;
        if (append_lost(self, seq, now) < 0 || note_lost(self, seq) < 0)
            return -1;
    }
    self->nack_highest = ext;
    return 0;
}

/* NackTracker.forget_through, for a 16-bit sequence number. */
static void forget_through(Track *self, unsigned int sequence) {
    if (!self->has_nack_highest)
        return;
    long long ext = self->nack_highest - ((self->nack_highest - (long long)sequence) & 0xFFFF);
    Py_ssize_t count = 0;
    while (count < self->lost_count && self->lost[count].seq <= ext)
        count++;
    remove_lost(self, 0, count);
}

/* -- the assembler -------------------------------------------------------------------------- */

static Slot *ring_slot(Track *self, long long seq) {
    return &self->slots[((seq % self->capacity) + self->capacity) % self->capacity];
}

static Slot *slot_at(Track *self, long long seq) {
    Slot *slot = ring_slot(self, seq);
    return (slot->payload != NULL && slot->seq == seq) ? slot : NULL;
}

static void empty_slot(Track *self, Slot *slot) {
    Py_CLEAR(slot->payload);
    Py_CLEAR(slot->data);
    self->slot_count--;
}

static void clear_slots(Track *self) {
    for (long long i = 0; i < self->capacity && self->slot_count > 0; i++) {
        if (self->slots[i].payload != NULL)
            empty_slot(self, &self->slots[i]);
    }
}

static const unsigned char *slot_data(Slot *slot, Py_ssize_t *length) {
    if (slot->data != NULL) {
        *length = PyBytes_GET_SIZE(slot->data);
        return (const unsigned char *)PyBytes_AS_STRING(slot->data);
    }
    *length = PyBytes_GET_SIZE(slot->payload) - slot->skip;
    return (const unsigned char *)PyBytes_AS_STRING(slot->payload) + slot->skip;
}

static int is_frame_start(Track *self, long long seq) {
    if (!self->video)
        return 1;
    Slot *slot = slot_at(self, seq);
    if (self->codecs[slot->payload_type].kind == CODEC_VP8) {
        /* RFC 7741 4.2: the S bit set and partition index 0 on a frame's first packet. */
        return PyBytes_GET_SIZE(slot->payload) > 0 &&
               (((const unsigned char *)PyBytes_AS_STRING(slot->payload))[0] & 0x17) == 0x10;
    }
    /* Other codecs: a frame's packets share a timestamp, so a new timestamp starts a frame. */
    Slot *previous = slot_at(self, seq - 1);
    if (previous != NULL)
        return previous->timestamp != slot->timestamp;
    return !self->has_removed || self->removed_ts != slot->timestamp;
}

/* The frame at the head, [next, *last], if all of it is in. */
static int frame_at_head(Track *self, long long *last) {
    Slot *head = slot_at(self, self->next);
    if (head == NULL || !is_frame_start(self, self->next))
        return 0;
    if (!self->video) {
        *last = self->next;
        return 1;
    }
    for (long long seq = self->next;; seq++) {
        Slot *slot = slot_at(self, seq);
        if (slot == NULL || slot->timestamp != head->timestamp)
            return 0; /* a packet to come, or the frame's last packet (marker) was lost */
        if (slot->marker) {
            *last = seq;
            return 1;
        }
    }
}

static int is_keyframe(int codec, const unsigned char *data, Py_ssize_t length) {
    if (codec == CODEC_VP8) /* RFC 6386 9.1: bit 0 of the frame tag is 0 for a key frame */
        return length > 0 && !(data[0] & 0x01);
    if (codec == CODEC_H264) { /* an IDR slice or a sequence parameter set */
        for (Py_ssize_t i = 0; i + 3 < length; i++) {
            if (data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1) {
                int type = data[i + 3] & 0x1F;
                if (type == 5 || type == 7)
                    return 1;
                i += 2;
            }
        }
        return 0;
    }
    return 1;
}

static void request_keyframe(Track *self) { self->out_keyframes++; }

/* FrameAssembler._emit: takes [next, last] out and hands the frame to Python. */
static int emit(Track *self, long long last, double now) {
    Slot *first = slot_at(self, self->next);
    int payload_type = first->payload_type;
    uint32_t timestamp = first->timestamp;
    Codec *codec = &self->codecs[payload_type];
    long long count = last - self->next + 1;
    PyObject *data = NULL, *payloads = NULL;
    int status = -1;

    if (codec->kind != CODEC_NONE) {
        Py_ssize_t size = 0, length;
        for (long long seq = self->next; seq <= last; seq++) {
            slot_data(slot_at(self, seq), &length);
            size += length;
        }
        if ((data = PyBytes_FromStringAndSize(NULL, size)) == NULL ||
            (payloads = PyTuple_New((Py_ssize_t)count)) == NULL)
            goto done;
        char *out = PyBytes_AS_STRING(data);
        for (long long seq = self->next; seq <= last; seq++) {
            Slot *slot = slot_at(self, seq);
            const unsigned char *part = slot_data(slot, &length);
            memcpy(out, part, length);
            out += length;
            PyTuple_SET_ITEM(payloads, (Py_ssize_t)(seq - self->next), Py_NewRef(slot->payload));
        }
    }
    for (long long seq = self->next; seq <= last; seq++)
        empty_slot(self, slot_at(self, seq));
    self->next = last + 1;
    self->has_removed = 1;
    self->removed_ts = timestamp;
    self->emitted_since_restart = 1;
    self->blocked = 0;
    if (codec->kind == CODEC_NONE) {
        status = 0;
        goto done;
    }
    int keyframe = is_keyframe(codec->kind, (const unsigned char *)PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data));
    if (self->waiting_keyframe) {
        if (!keyframe) {
            self->frames_skipped++;
            request_keyframe(self);
            status = 0;
            goto done;
        }
        self->waiting_keyframe = 0;
    }
    long long extended = unwrap(&self->ts, timestamp);
    if (!self->has_origin) {
        self->has_origin = 1;
        self->ts_origin = extended;
    }
    self->frames++;
    if (self->out_frames == NULL && (self->out_frames = PyList_New(0)) == NULL)
        goto done;
    /* The order of EncodedFrame's fields after its kind. */
    PyObject *frame = Py_BuildValue("(OOLlOdO)", codec->name, data, extended - self->ts_origin, codec->clock_rate,
                                    keyframe ? Py_True : Py_False, now, payloads);
    if (frame == NULL)
        goto done;
    status = PyList_Append(self->out_frames, frame);
    Py_DECREF(frame);
done:
    Py_XDECREF(data);
    Py_XDECREF(payloads);
    return status;
}

/* FrameAssembler._skip_hole: give up on the hole at the head, jump to the next frame start. */
static void skip_hole(Track *self) {
    self->holes_skipped++;
    Slot *head = slot_at(self, self->next);
    if (head != NULL) { /* the hole's frame: a packet after the hole with its timestamp is not a start */
        self->has_removed = 1;
        self->removed_ts = head->timestamp;
    }
    long long target = self->highest + 1;
    for (long long seq = self->next + 1; seq <= self->highest; seq++) {
        if (slot_at(self, seq) != NULL && is_frame_start(self, seq)) {
            target = seq;
            break;
        }
    }
    for (long long seq = self->next; seq < target; seq++) {
        Slot *slot = slot_at(self, seq);
        if (slot != NULL) {
            self->has_removed = 1;
            self->removed_ts = slot->timestamp;
            empty_slot(self, slot);
        }
    }
    self->next = target;
    self->blocked = 0;
    if (self->nack)
        forget_through(self, (unsigned int)((target - 1) & 0xFFFF));
    if (self->video) {
        self->waiting_keyframe = 1;
        request_keyframe(self);
    }
}

static int drain(Track *self, double now) {
    long long last;
    while (self->slot_count > 0) {
        if (frame_at_head(self, &last)) {
            if (emit(self, last, now) < 0)
                return -1;
            continue;
        }
        if (self->slot_count == self->highest - self->next + 1 && is_frame_start(self, self->next)) {
            self->blocked = 0; /* a frame still coming in, with no hole: wait for it */
            return 0;
        }
        if (!self->blocked) {
            self->blocked = 1;
            self->blocked_since = now;
            self->asked_keyframe = 0;
        }
        double waited = now - self->blocked_since;
        if (self->video && waited >= self->keyframe_after && !self->asked_keyframe) {
            self->asked_keyframe = 1;
            request_keyframe(self);
        }
        if (waited < self->max_wait)
            return 0;
        skip_hole(self);
    }
    return 0;
}

static void restart(Track *self, long long ext) {
    self->emitted_since_restart = 0;
    clear_slots(self);
    self->has_next = 1;
    self->next = ext;
    self->highest = ext - 1;
    self->blocked = 0;
    if (self->video)
        self->waiting_keyframe = 1;
}

/* FrameAssembler.add. Takes the references to payload and data (data may be NULL). */
static int assemble(Track *self, unsigned int sequence, uint32_t timestamp, int marker, int payload_type,
                    PyObject *payload, PyObject *data, Py_ssize_t skip, double now) {
    long long ext = unwrap(&self->seq, sequence);
    if (!self->has_next || ext - self->next >= self->capacity || self->next - ext > self->capacity)
        restart(self, ext);
    if (ext < self->next) {
        /* The ring holds [next, next + capacity): a packet that would not fit is late too. */
        if (self->emitted_since_restart || self->next - ext > MAX_REORDER || self->highest - ext >= self->capacity) {
            self->packets_late++;
            Py_DECREF(payload);
            Py_XDECREF(data);
            return 0;
        }
        self->next = ext; /* reordered ahead of the very first packet: start earlier */
    }
    Slot *slot = ring_slot(self, ext);
    if (slot->payload != NULL)
        empty_slot(self, slot); /* a duplicate replaces the first copy */
    *slot = (Slot){.payload = payload, .data = data, .skip = skip, .seq = ext, .timestamp = timestamp,
                   .marker = marker, .payload_type = payload_type};
    self->slot_count++;
    if (ext == self->highest + 1 && !marker && self->video && !self->blocked) {
        /* The next packet of a video frame still coming in, with no hole before it: no frame can be
         * complete yet (the one at the head ends with a marker), so nothing to drain. */
        self->highest = ext;
        return 0;
    }
    if (ext > self->highest)
        self->highest = ext;
    return drain(self, now);
}

/* -- depayloading --------------------------------------------------------------------------- */

/* aiortc's h264_depayload (RFC 6184: single NAL units, FU-A, STAP-A) into Annex B. Returns 1 with
 * *out set, 0 for a payload it does not take (aiortc raises ValueError), -1 on an error. */
static int h264_depayload(const unsigned char *d, Py_ssize_t n, PyObject **out) {
    static const char start_code[4] = {0, 0, 0, 1};
    if (n < 2)
        return 0;
    int type = d[0] & 0x1F;
    if (type >= 1 && type <= 23) {
        if ((*out = PyBytes_FromStringAndSize(NULL, 4 + n)) == NULL)
            return -1;
        memcpy(PyBytes_AS_STRING(*out), start_code, 4);
        memcpy(PyBytes_AS_STRING(*out) + 4, d, n);
        return 1;
    }
    if (type == 28) { /* FU-A */
        int first = d[1] & 0x80;
        Py_ssize_t head = first ? 5 : 0;
        if ((*out = PyBytes_FromStringAndSize(NULL, head + n - 2)) == NULL)
            return -1;
        char *o = PyBytes_AS_STRING(*out);
        if (first) {
            memcpy(o, start_code, 4);
            o[4] = (char)((d[0] & 0xE0) | (d[1] & 0x1F));
        }
        memcpy(o + head, d + 2, n - 2);
        return 1;
    }
    if (type == 24) { /* STAP-A */
        Py_ssize_t pos = 1, size = 0;
        while (pos < n) {
            if (n < pos + 2)
                return 0;
            Py_ssize_t unit = (Py_ssize_t)d[pos] << 8 | d[pos + 1];
            pos += 2 + unit;
            if (n < pos)
                return 0;
            size += 4 + unit;
        }
        if ((*out = PyBytes_FromStringAndSize(NULL, size)) == NULL)
            return -1;
        char *o = PyBytes_AS_STRING(*out);
        for (pos = 1; pos < n;) {
            Py_ssize_t unit = (Py_ssize_t)d[pos] << 8 | d[pos + 1];
            memcpy(o, start_code, 4);
            memcpy(o + 4, d + pos + 2, unit);
            o += 4 + unit;
            pos += 2 + unit;
        }
        return 1;
    }
    return 0;
}

/* Depayloads and assembles one packet (after the statistics and the NACK tracker). */
static int take_payload(Track *self, unsigned int sequence, uint32_t timestamp, int marker, int payload_type,
                        const unsigned char *payload, Py_ssize_t length, double now) {
    PyObject *data = NULL;
    Py_ssize_t skip = 0;
    if (length > 0) {
        int kind = self->codecs[payload_type].kind;
        if (kind == CODEC_VP8) {
            if ((skip = datapath_vp8_descriptor_length(payload, length)) < 0)
                return 0; /* as aiortc does: a payload that does not parse is dropped */
        } else if (kind == CODEC_H264) {
            int read = h264_depayload(payload, length, &data);
            if (read <= 0)
                return read;
        }
    }
    PyObject *bytes = PyBytes_FromStringAndSize((const char *)payload, length);
    if (bytes == NULL) {
        Py_XDECREF(data);
        return -1;
    }
    return assemble(self, sequence, timestamp, marker, payload_type, bytes, data, skip, now);
}

/* -- statistics ----------------------------------------------------------------------------- */

static int uint16_gt(unsigned int a, unsigned int b) {
    return (a < b && b - a > 0x8000) || (a > b && a - b < 0x8000);
}

/* aiortc's StreamStatistics.add. */
static void count(Track *self, unsigned int sequence, uint32_t timestamp) {
    int in_order = !self->has_max || uint16_gt(sequence, self->max_seq);
    self->packets_received++;
    if (!self->has_base) {
        self->has_base = 1;
        self->base_seq = sequence;
    }
    if (!in_order)
        return;
    long long arrival = (long long)(wall_now() * (double)self->stats_clock_rate);
    if (self->has_max && sequence < self->max_seq)
        self->cycles += 1 << 16;
    self->has_max = 1;
    self->max_seq = sequence;
    if ((long long)timestamp != self->last_timestamp && self->packets_received > 1) {
        long long diff = llabs((arrival - self->last_arrival) - ((long long)timestamp - self->last_timestamp));
        self->jitter_q4 += diff - ((self->jitter_q4 + 8) >> 4);
    }
    self->last_arrival = arrival;
    self->last_timestamp = timestamp;
}

/* -- the type ------------------------------------------------------------------------------- */

static void Track_dealloc(Track *self) {
    if (self->slots != NULL) {
        clear_slots(self);
        PyMem_Free(self->slots);
    }
    for (int i = 0; i < 128; i++)
        Py_CLEAR(self->codecs[i].name);
    PyMem_Free(self->lost);
    clear_events(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Track_init(Track *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"video", "codecs", "max_wait", "keyframe_after", "capacity", "nack",
                               "retry_interval", "max_tries", "max_age", NULL};
    int video, nack = 0, max_tries = 5;
    PyObject *codecs;
    double max_wait = 0.3, keyframe_after = 0.15, retry_interval = 0.05, max_age = 0.6;
    long long capacity = 2048;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "pO!|$ddLpdid", keywords, &video, &PyDict_Type, &codecs,
                                     &max_wait, &keyframe_after, &capacity, &nack, &retry_interval, &max_tries,
                                     &max_age))
        return -1;
    if (self->slots != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a Track is set up once");
        return -1;
    }
    if (capacity < MAX_REORDER * 2 || capacity > 1 << 16 || max_tries < 1 || retry_interval <= 0) {
        PyErr_SetString(PyExc_ValueError, "Track: capacity, max_tries or retry_interval out of range");
        return -1;
    }
    PyObject *key, *value;
    Py_ssize_t position = 0;
    while (PyDict_Next(codecs, &position, &key, &value)) {
        const char *name;
        long clock_rate;
        PyObject *name_object;
        long payload_type = PyLong_AsLong(key);
        if (payload_type == -1 && PyErr_Occurred())
            return -1;
        if (payload_type < 0 || payload_type > 127) {
            PyErr_Format(PyExc_ValueError, "payload type %ld is not 0-127", payload_type);
            return -1;
        }
        if (!PyArg_ParseTuple(value, "Ul", &name_object, &clock_rate))
            return -1;
        if ((name = PyUnicode_AsUTF8(name_object)) == NULL)
            return -1;
        Codec *codec = &self->codecs[payload_type];
        codec->kind = strcmp(name, "vp8") == 0 ? CODEC_VP8 : strcmp(name, "h264") == 0 ? CODEC_H264 : CODEC_OTHER;
        codec->clock_rate = clock_rate;
        Py_XSETREF(codec->name, Py_NewRef(name_object));
    }
    self->slots = PyMem_Calloc((size_t)capacity, sizeof(Slot));
    if (self->slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->video = video;
    self->capacity = capacity;
    self->max_wait = max_wait;
    self->keyframe_after = keyframe_after;
    self->nack = nack;
    self->retry_interval = retry_interval;
    self->max_tries = max_tries;
    self->max_age = max_age;
    self->seq.bits = 16;
    self->nack_seq.bits = 16;
    self->ts.bits = 32;
    self->waiting_keyframe = video;
    self->last_timestamp = -1;
    return 0;
}

PyDoc_STRVAR(Track_receive_doc,
"receive(srtp_context, srtp_unprotect, datagram, now=None) -> None | bytes | tuple\n"
"\n"
"Take in one SRTP datagram of the bound SSRC: unprotect it (as _datapath.receive), count it in the\n"
"statistics, track loss, depayload and assemble it. Returns None when it leaves nothing to do (or\n"
"does not authenticate: it is dropped, as aiortc does), the plain packet (bytes) for aiortc's own\n"
"path when the track does not take it (another SSRC, a payload type it was not given such as\n"
"RTX, a header the fast path does not read), else (frames, lost, keyframe requests, frame end):\n"
"frames completed, as tuples of EncodedFrame's fields after its kind, or None; sequence numbers\n"
"newly lost, to NACK now, or None; how many times a keyframe is wanted; and on a video frame's last\n"
"packet with a header extension, (frame bytes, extension profile, extension bytes, arrival in NTP\n"
"milliseconds) for the bandwidth estimator, else None. ``now`` is time.monotonic(), read here\n"
"when None.");

static PyObject *Track_receive(Track *self, PyObject *args) {
    unsigned long long context_address, unprotect_address;
    Py_buffer datagram;
    PyObject *now_object = NULL;
    RtpHeader h;
    double now;
    if (!PyArg_ParseTuple(args, "KKy*|O", &context_address, &unprotect_address, &datagram, &now_object))
        return NULL;
    int read = datapath_read(context_address, unprotect_address, datagram.buf, datagram.len, &h);
    PyBuffer_Release(&datagram);
    if (read == RTP_ERROR)
        return NULL;
    if (read == RTP_DROPPED)
        Py_RETURN_NONE;
    if (read == RTP_MALFORMED || !self->has_ssrc || h.ssrc != self->ssrc ||
        self->codecs[h.payload_type].kind == CODEC_NONE)
        return PyBytes_FromStringAndSize((const char *)h.packet, h.length);
    if (read_now(now_object, &now) < 0)
        return NULL;
    const unsigned char *p = h.packet;
    self->packets++;
    count(self, h.sequence, h.timestamp);
    if (self->video) {
        self->frame_bytes += h.payload_length + h.padding;
        if (h.marker) {
            if (h.extension_at >= 0) {
                long long arrival_ms = (long long)((wall_now() + NTP_EPOCH_OFFSET) * 1000);
                self->out_frame_end = Py_BuildValue("(LIy#L)", self->frame_bytes, h.extension_profile,
                                                    p + h.extension_at, h.extension_length, arrival_ms);
                if (self->out_frame_end == NULL)
                    goto failed;
            }
            self->frame_bytes = 0;
        }
    }
    if (self->nack && nack_add(self, h.sequence, now) < 0)
        goto failed;
    if (take_payload(self, h.sequence, h.timestamp, h.marker, h.payload_type, p + h.payload_at, h.payload_length,
                     now) < 0)
        goto failed;
    return take_events(self);
failed:
    clear_events(self);
    return NULL;
}

PyDoc_STRVAR(Track_add_doc,
"add(packet, now=None) -> None | tuple\n"
"\n"
"Take in a packet that came aiortc's way (a retransmission, unwrapped; the first of its source):\n"
"an object with sequence_number, timestamp, marker, payload_type, payload and _data (the\n"
"depayloaded bytes). It is tracked for loss and assembled, not counted in the statistics (aiortc\n"
"did that). Returns what receive() returns for a packet it took.");

static PyObject *Track_add(Track *self, PyObject *args) {
    PyObject *packet, *now_object = NULL;
    PyObject *values[6] = {NULL};
    static const char *names[6] = {"sequence_number", "timestamp", "marker", "payload_type", "payload", "_data"};
    PyObject *result = NULL;
    double now;
    if (!PyArg_ParseTuple(args, "O|O", &packet, &now_object) || read_now(now_object, &now) < 0)
        return NULL;
    for (int i = 0; i < 6; i++) {
        if ((values[i] = PyObject_GetAttrString(packet, names[i])) == NULL)
            goto done;
    }
    unsigned long sequence = PyLong_AsUnsignedLong(values[0]);
    unsigned long timestamp = PyLong_AsUnsignedLong(values[1]);
    int marker = PyObject_IsTrue(values[2]);
    long payload_type = PyLong_AsLong(values[3]);
    if (PyErr_Occurred() || marker < 0)
        goto done;
    if (sequence > 0xFFFF || timestamp > 0xFFFFFFFFUL || payload_type < 0 || payload_type > 127 ||
        !PyBytes_Check(values[4]) || !PyBytes_Check(values[5])) {
        PyErr_SetString(PyExc_ValueError, "add: not an RTP packet");
        goto done;
    }
    if (self->nack && nack_add(self, (unsigned int)sequence, now) < 0)
        goto failed;
    if (assemble(self, (unsigned int)sequence, (uint32_t)timestamp, marker, (int)payload_type, Py_NewRef(values[4]),
                 Py_NewRef(values[5]), 0, now) < 0)
        goto failed;
    result = take_events(self);
    goto done;
failed:
    clear_events(self);
done:
    for (int i = 0; i < 6; i++)
        Py_XDECREF(values[i]);
    return result;
}

PyDoc_STRVAR(Track_due_doc,
"due(now=None) -> list[int]\n"
"\n"
"NackTracker.due: the sequence numbers to ask for again now; forgets the hopeless ones.");

static PyObject *Track_due(Track *self, PyObject *args) {
    PyObject *now_object = NULL;
    double now;
    if (!PyArg_ParseTuple(args, "|O", &now_object) || read_now(now_object, &now) < 0)
        return NULL;
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    Py_ssize_t kept = 0;
    for (Py_ssize_t i = 0; i < self->lost_count; i++) {
        Lost entry = self->lost[i];
        if (now - entry.first_lost > self->max_age || entry.tries >= self->max_tries) {
            self->given_up++;
            continue;
        }
        /* Backing off: when loss comes from an overloaded relay, asking again and again for every
         * packet would only add to the load that lost them. */
        if (now - entry.last_asked >= ldexp(self->retry_interval, entry.tries - 1)) {
            entry.last_asked = now;
            entry.tries++;
            PyObject *number = PyLong_FromLongLong(entry.seq & 0xFFFF);
            if (number == NULL || PyList_Append(out, number) < 0) {
                Py_XDECREF(number);
                Py_DECREF(out);
                memmove(self->lost + kept, self->lost + i, (self->lost_count - i) * sizeof(Lost));
                self->lost_count = kept + self->lost_count - i;
                return NULL;
            }
            Py_DECREF(number);
        }
        self->lost[kept++] = entry;
    }
    self->lost_count = kept;
    self->nacks_sent += PyList_GET_SIZE(out);
    return out;
}

PyDoc_STRVAR(Track_bind_doc,
"bind(ssrc, clock_rate, base_seq, max_seq, cycles, packets_received, jitter_q4, last_arrival,\n"
"     last_timestamp)\n"
"\n"
"Take the media of ``ssrc`` in receive() from now on, with the statistics aiortc had counted for\n"
"it so far (StreamStatistics' fields; -1 for None).");

static PyObject *Track_bind(Track *self, PyObject *args) {
    unsigned long ssrc;
    long clock_rate;
    long long base_seq, max_seq, cycles, packets_received, jitter_q4, last_arrival, last_timestamp;
    if (!PyArg_ParseTuple(args, "klLLLLLLL", &ssrc, &clock_rate, &base_seq, &max_seq, &cycles, &packets_received,
                          &jitter_q4, &last_arrival, &last_timestamp))
        return NULL;
    if (ssrc > 0xFFFFFFFFUL || clock_rate <= 0 || base_seq > 0xFFFF || max_seq > 0xFFFF) {
        PyErr_SetString(PyExc_ValueError, "bind: not an SSRC, a clock rate or a sequence number");
        return NULL;
    }
    self->has_ssrc = 1;
    self->ssrc = (uint32_t)ssrc;
    self->stats_clock_rate = clock_rate;
    self->has_base = base_seq >= 0;
    self->base_seq = (unsigned int)(base_seq < 0 ? 0 : base_seq);
    self->has_max = max_seq >= 0;
    self->max_seq = (unsigned int)(max_seq < 0 ? 0 : max_seq);
    self->cycles = cycles;
    self->packets_received = packets_received;
    self->jitter_q4 = jitter_q4;
    self->last_arrival = last_arrival;
    self->last_timestamp = last_timestamp;
    Py_RETURN_NONE;
}

static PyObject *Track_count(Track *self, PyObject *args) {
    unsigned int sequence;
    unsigned long timestamp;
    if (!PyArg_ParseTuple(args, "Ik", &sequence, &timestamp))
        return NULL;
    if (!self->has_ssrc || sequence > 0xFFFF || timestamp > 0xFFFFFFFFUL) {
        PyErr_SetString(PyExc_ValueError, "count: an unbound track, or not a sequence number or timestamp");
        return NULL;
    }
    count(self, sequence, (uint32_t)timestamp);
    Py_RETURN_NONE;
}

static PyObject *Track_frame_timestamp(Track *self, PyObject *arg) {
    unsigned long timestamp = PyLong_AsUnsignedLong(arg);
    if (timestamp == (unsigned long)-1 && PyErr_Occurred())
        return NULL;
    if (!self->has_origin)
        Py_RETURN_NONE;
    return PyLong_FromUnsignedLong((uint32_t)((uint32_t)timestamp - (uint32_t)self->ts_origin));
}

static PyObject *Track_forget_through(Track *self, PyObject *arg) {
    unsigned long sequence = PyLong_AsUnsignedLong(arg);
    if (sequence == (unsigned long)-1 && PyErr_Occurred())
        return NULL;
    forget_through(self, (unsigned int)(sequence & 0xFFFF));
    Py_RETURN_NONE;
}

static PyMethodDef Track_methods[] = {
    {"receive", (PyCFunction)Track_receive, METH_VARARGS, Track_receive_doc},
    {"add", (PyCFunction)Track_add, METH_VARARGS, Track_add_doc},
    {"due", (PyCFunction)Track_due, METH_VARARGS, Track_due_doc},
    {"bind", (PyCFunction)Track_bind, METH_VARARGS, Track_bind_doc},
    {"count", (PyCFunction)Track_count, METH_VARARGS,
     "count(sequence_number, timestamp): StreamStatistics.add, for a packet of the bound SSRC that came "
     "aiortc's way."},
    {"frame_timestamp", (PyCFunction)Track_frame_timestamp, METH_O,
     "frame_timestamp(rtp_timestamp) -> int | None: FrameAssembler.frame_timestamp."},
    {"forget_through", (PyCFunction)Track_forget_through, METH_O,
     "forget_through(sequence_number): NackTracker.forget_through."},
    {NULL, NULL, 0, NULL},
};

static PyObject *optional_long(int present, long long value) {
    if (!present)
        Py_RETURN_NONE;
    return PyLong_FromLongLong(value);
}

static PyObject *get_ssrc(Track *self, void *closure) { return optional_long(self->has_ssrc, self->ssrc); }
static PyObject *get_base_seq(Track *self, void *closure) { return optional_long(self->has_base, self->base_seq); }
static PyObject *get_max_seq(Track *self, void *closure) { return optional_long(self->has_max, self->max_seq); }
static PyObject *get_outstanding(Track *self, void *closure) { return PyLong_FromSsize_t(self->lost_count); }
static PyObject *get_video(Track *self, void *closure) { return PyBool_FromLong(self->video); }

static PyGetSetDef Track_getset[] = {
    {"ssrc", (getter)get_ssrc, NULL, "The SSRC whose media receive() takes, or None before bind().", NULL},
    {"base_seq", (getter)get_base_seq, NULL, "StreamStatistics.base_seq.", NULL},
    {"max_seq", (getter)get_max_seq, NULL, "StreamStatistics.max_seq.", NULL},
    {"outstanding", (getter)get_outstanding, NULL, "NackTracker.outstanding: lost packets still asked for.", NULL},
    {"video", (getter)get_video, NULL, "Whether this is a video track.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

#define MEMBER(name, type, doc) {#name, type, offsetof(Track, name), READONLY, doc}

static PyMemberDef Track_members[] = {
    MEMBER(frames, T_LONGLONG, "FrameAssembler.frames: frames handed to Python."),
    MEMBER(frames_skipped, T_LONGLONG, "FrameAssembler.frames_skipped: frames dropped waiting for a keyframe."),
    MEMBER(holes_skipped, T_LONGLONG, "FrameAssembler.holes_skipped: holes given up on."),
    MEMBER(packets_late, T_LONGLONG, "FrameAssembler.packets_late: packets for frames already gone."),
    {"head", T_LONGLONG, offsetof(Track, next), READONLY, "The extended sequence number of the next packet to assemble."},
    MEMBER(packets, T_LONGLONG, "Packets receive() took (the rest went aiortc's way)."),
    {"lost", T_LONGLONG, offsetof(Track, lost_total), READONLY, "NackTracker.lost: packets found lost."},
    MEMBER(recovered, T_LONGLONG, "NackTracker.recovered: lost packets that came after all."),
    MEMBER(given_up, T_LONGLONG, "NackTracker.given_up: lost packets no longer asked for."),
    MEMBER(nacks_sent, T_LONGLONG, "NackTracker.nacks_sent: sequence numbers asked for, retries included."),
    MEMBER(retry_interval, T_DOUBLE, "NackTracker.retry_interval, in seconds."),
    MEMBER(cycles, T_LONGLONG, "StreamStatistics.cycles."),
    MEMBER(packets_received, T_LONGLONG, "StreamStatistics.packets_received."),
    MEMBER(jitter_q4, T_LONGLONG, "StreamStatistics._jitter_q4."),
    {NULL, 0, 0, 0, NULL},
};

PyDoc_STRVAR(Track_doc,
"Track(video, codecs, *, max_wait=0.3, keyframe_after=0.15, capacity=2048, nack=False,\n"
"      retry_interval=0.05, max_tries=5, max_age=0.6)\n"
"\n"
"A publisher's track received packet by packet: the RTCP statistics, NACK tracking (when\n"
"``nack``), depayloading and frame assembly in C (see _track.c). ``codecs`` maps payload types to\n"
"(lower-case codec name, clock rate). The other arguments are FrameAssembler's and NackTracker's.");

static PyTypeObject TrackType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "media_relay.forwarding._datapath.Track",
    .tp_basicsize = sizeof(Track),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = Track_doc,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Track_init,
    .tp_dealloc = (destructor)Track_dealloc,
    .tp_methods = Track_methods,
    .tp_getset = Track_getset,
    .tp_members = Track_members,
};

int datapath_add_track(PyObject *module) {
    if (PyType_Ready(&TrackType) < 0)
        return -1;
    return PyModule_AddObjectRef(module, "Track", (PyObject *)&TrackType);
}
