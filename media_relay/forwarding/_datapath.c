/* The relay's per-packet work in C (issue 3): Python handles whole frames, this handles packets.
 *
 * receive(): a publisher's SRTP datagram in. It is unprotected in place, its RTP header read
 * (RFC 3550 5.1: version, padding, extension, CSRCs) and the length of its VP8 payload descriptor
 * (RFC 7741 4.2) found, all in one call; aiortc_compat._FastReceive takes it from there (the
 * statistics, the NACK tracker, the assembler).
 *
 * send_frame(): a viewer's frame out. For each RTP payload of a frame: the viewer's header in front
 * of it (its payload type, SSRC, timestamp and the next sequence number; the marker on the last
 * packet), the plain packet kept in the retransmission history, the packet SRTP-protected in
 * place, and then the frame's datagrams written to the viewer's socket in one sendmmsg(2), runs of
 * equal size as single messages with UDP generic segmentation offload (UDP_SEGMENT) where the
 * caller allows it. It does what rtp_out.packetize, aiortc_compat.LeanSrtp.protect and
 * udp_batch.UdpBatchSender.send do in Python, with the same bytes out.
 *
 * tests/media_relay/test_datapath.py checks both against their Python counterparts.
 *
 * SRTP: the caller passes the address of a libsrtp 2 context (srtp_t) and of libsrtp's own
 * srtp_protect or srtp_unprotect, both taken from pylibsrtp's binding (aiortc_compat.LeanSrtp), so
 * that the session aiortc keyed is the one used, through the library that made it; nothing is
 * linked here.
 *
 * The GIL is held throughout: the buffers below are this module's scratch space.
 */

#include "_datapath.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103 /* linux/udp.h */
#endif
#ifndef SOL_UDP
#define SOL_UDP 17
#endif

#define MAX_PACKET 1900      /* an RTP packet, before protection: a link's MTU is 1500 */
#define MAX_TRAILER 148      /* libsrtp 2's SRTP_MAX_TRAILER_LEN (16 + 128), rounded up */
#define SLOT (MAX_PACKET + MAX_TRAILER)
#define MAX_DATAGRAMS 128    /* per flush: a 720p keyframe is about 40 packets */
#define MAX_SEGMENTS 64      /* the kernel's UDP_MAX_SEGMENTS */
#define MAX_GSO_BYTES 60000  /* under the 64 KiB one send can carry, with room for headers */


static unsigned char buffer[MAX_DATAGRAMS * SLOT];
static size_t offsets[MAX_DATAGRAMS];
static int lengths[MAX_DATAGRAMS];

struct gso_control {
    struct cmsghdr header;
    uint16_t segment_size;
};

typedef struct {
    int fd;
    int gso;
    union {
        struct sockaddr_in v4;
        struct sockaddr_in6 v6;
    } address;
    socklen_t address_length;
    int error;       /* errno of a refused send, 0 when none */
    Py_ssize_t sent; /* datagrams the kernel took */
} Destination;

static int parse_address(PyObject *address, int family, Destination *to) {
    const char *host;
    int port;
    unsigned int flowinfo = 0, scope_id = 0;
    memset(&to->address, 0, sizeof(to->address));
    if (family == AF_INET) {
        if (!PyArg_ParseTuple(address, "si", &host, &port))
            return -1;
        to->address.v4.sin_family = AF_INET;
        to->address.v4.sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, host, &to->address.v4.sin_addr) != 1) {
            PyErr_Format(PyExc_ValueError, "not an IPv4 address: %s", host);
            return -1;
        }
        to->address_length = sizeof(struct sockaddr_in);
        return 0;
    }
    if (family == AF_INET6) {
        if (!PyArg_ParseTuple(address, "si|II", &host, &port, &flowinfo, &scope_id))
            return -1;
        to->address.v6.sin6_family = AF_INET6;
        to->address.v6.sin6_port = htons((uint16_t)port);
        to->address.v6.sin6_flowinfo = htonl(flowinfo);
        to->address.v6.sin6_scope_id = scope_id;
        if (inet_pton(AF_INET6, host, &to->address.v6.sin6_addr) != 1) {
            PyErr_Format(PyExc_ValueError, "not an IPv6 address: %s", host);
            return -1;
        }
        to->address_length = sizeof(struct sockaddr_in6);
        return 0;
    }
    PyErr_Format(PyExc_ValueError, "unsupported address family %d", family);
    return -1;
}

/* Write datagrams [0, count) of the buffer to the socket; to->sent counts those taken. On a
 * refusal (a full socket, no segmentation offload here), to->error says why and the rest are not
 * sent: the caller hands them to the asyncio transport, in order. */
static void flush(Destination *to, int count) {
    struct mmsghdr messages[MAX_DATAGRAMS];
    struct iovec vectors[MAX_DATAGRAMS];
    struct gso_control controls[MAX_DATAGRAMS];
    int first_datagram[MAX_DATAGRAMS + 1];
    int message_count = 0;
    int start = 0;

    while (start < count) {
        int size = lengths[start];
        int end = start + 1;
        if (to->gso) {
            int limit = start + MAX_SEGMENTS;
            if (limit > count)
                limit = count;
            if (start + MAX_GSO_BYTES / size < limit)
                limit = start + MAX_GSO_BYTES / size;
            while (end < limit && lengths[end] == size)
                end++;
            if (end < limit && lengths[end] < size)
                end++; /* a shorter datagram may end the run */
        }
        struct msghdr *message = &messages[message_count].msg_hdr;
        memset(message, 0, sizeof(*message));
        message->msg_name = &to->address;
        message->msg_namelen = to->address_length;
        vectors[message_count].iov_base = buffer + offsets[start];
        vectors[message_count].iov_len = offsets[end - 1] + lengths[end - 1] - offsets[start];
        message->msg_iov = &vectors[message_count];
        message->msg_iovlen = 1;
        if (end - start > 1) {
            struct gso_control *control = &controls[message_count];
            memset(control, 0, sizeof(*control));
            control->header.cmsg_level = SOL_UDP;
            control->header.cmsg_type = UDP_SEGMENT;
            control->header.cmsg_len = CMSG_LEN(sizeof(uint16_t));
            control->segment_size = (uint16_t)size;
            message->msg_control = control;
            message->msg_controllen = CMSG_SPACE(sizeof(uint16_t));
        }
        first_datagram[message_count] = start;
        message_count++;
        start = end;
    }
    first_datagram[message_count] = count;

    int done = 0;
    while (done < message_count) {
        int sent = sendmmsg(to->fd, messages + done, (unsigned int)(message_count - done), 0);
        if (sent < 0) {
            if (errno == EINTR)
                continue;
            to->error = errno;
            break;
        }
        done += sent;
    }
    to->sent = first_datagram[done];
}

PyDoc_STRVAR(send_frame_doc,
"send_frame(fd, family, address, gso, srtp_context, srtp_protect, header, payloads, sequence,\n"
"           marker, history) -> (sequence, octets, unsent, error)\n"
"\n"
"Send one frame's RTP payloads to a viewer. ``header`` is the packets' header (12 bytes and any\n"
"header extension) with the sequence number and marker left 0; each packet takes the next\n"
"sequence number from ``sequence`` (mod 2**16) and the last one ``marker`` (0x80 or 0). Each plain\n"
"packet is stored in ``history`` (a list) at its sequence number modulo the list's length. The\n"
"packets are protected with ``srtp_protect(srtp_context, ...)`` (addresses) and written to socket\n"
"``fd`` (of ``family``) for ``address``, with UDP segmentation offload when ``gso``.\n"
"\n"
"Returns the next sequence number, the payload octets sent, the protected datagrams the socket\n"
"did not take (to be sent in order by other means) and the errno of the refusal (0 if none).\n"
"Raises TypeError or ValueError (a packet too long) before anything is sent or kept, and OSError\n"
"when protecting fails (the packets protected before it are sent first).");

/* Send the buffer's datagrams, or, once the socket refused some (to->error), keep them for the
 * caller: appended to ``unsent`` in order. The buffer is then empty. */
static int drain(Destination *to, int count, PyObject *unsent) {
    int from = 0;
    if (!to->error) {
        flush(to, count);
        from = (int)to->sent;
    }
    for (int i = from; i < count; i++) {
        PyObject *datagram = PyBytes_FromStringAndSize((const char *)buffer + offsets[i], lengths[i]);
        if (datagram == NULL)
            return -1;
        int appended = PyList_Append(unsent, datagram);
        Py_DECREF(datagram);
        if (appended < 0)
            return -1;
    }
    return 0;
}

static PyObject *send_frame(PyObject *module, PyObject *args) {
    int fd, family, gso, marker;
    PyObject *address, *payloads, *history;
    unsigned long long context_address, protect_address;
    Py_buffer header;
    unsigned int sequence;
    if (!PyArg_ParseTuple(args, "iiOpKKy*O!IiO!", &fd, &family, &address, &gso, &context_address,
                          &protect_address, &header, &PyTuple_Type, &payloads, &sequence, &marker,
                          &PyList_Type, &history))
        return NULL;

    PyObject *result = NULL;
    PyObject *unsent = NULL;
    Destination to = {.fd = fd, .gso = gso, .error = 0, .sent = 0};
    void *context = (void *)(uintptr_t)context_address;
    srtp_fn protect = (srtp_fn)(uintptr_t)protect_address;
    Py_ssize_t history_size = PyList_GET_SIZE(history);
    Py_ssize_t count = PyTuple_GET_SIZE(payloads);
    Py_ssize_t header_length = header.len;
    long long octets = 0;
    int buffered = 0;
    int failed_status = 0;
    size_t offset = 0;
    const unsigned char *template = header.buf;

    if (header_length < 12 || header_length > 64 || context == NULL || protect == NULL ||
        history_size == 0) {
        PyErr_SetString(PyExc_ValueError, "send_frame: bad header, SRTP context or history");
        goto done;
    }
    if (parse_address(address, family, &to) < 0)
        goto done;
    unsent = PyList_New(0);
    if (unsent == NULL)
        goto done;

    for (Py_ssize_t i = 0; i < count; i++) { /* all checked before anything is sent or kept */
        PyObject *payload = PyTuple_GET_ITEM(payloads, i);
        if (!PyBytes_Check(payload)) {
            PyErr_SetString(PyExc_TypeError, "send_frame: payloads must be bytes");
            goto done;
        }
        if (header_length + PyBytes_GET_SIZE(payload) > MAX_PACKET) {
            PyErr_Format(PyExc_ValueError, "an RTP packet of %zd bytes is too long",
                         header_length + PyBytes_GET_SIZE(payload));
            goto done;
        }
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *payload = PyTuple_GET_ITEM(payloads, i);
        Py_ssize_t payload_length = PyBytes_GET_SIZE(payload);
        Py_ssize_t length = header_length + payload_length;
        PyObject *plain = PyBytes_FromStringAndSize(NULL, length);
        if (plain == NULL)
            goto done;
        unsigned char *packet = (unsigned char *)PyBytes_AS_STRING(plain);
        memcpy(packet, template, header_length);
        memcpy(packet + header_length, PyBytes_AS_STRING(payload), payload_length);
        packet[1] = (unsigned char)((template[1] & 0x7F) | (i == count - 1 ? (marker & 0x80) : 0));
        packet[2] = (unsigned char)(sequence >> 8);
        packet[3] = (unsigned char)sequence;
        /* The history owns the plain packet now (PyList_SetItem steals the reference). */
        if (PyList_SetItem(history, (Py_ssize_t)(sequence % history_size), plain) < 0)
            goto done;
        sequence = (sequence + 1) & 0xFFFF;

        if (buffered == MAX_DATAGRAMS || offset + SLOT > sizeof(buffer)) {
            if (drain(&to, buffered, unsent) < 0)
                goto done;
            buffered = 0;
            offset = 0;
        }
        /* Protected in place, one after the other: runs of equal size lie back to back, as
         * segmentation offload takes them. */
        memcpy(buffer + offset, packet, length);
        int protected_length = (int)length;
        int status = protect(context, buffer + offset, &protected_length);
        if (status) {
            failed_status = status;
            break;
        }
        offsets[buffered] = offset;
        lengths[buffered] = protected_length;
        buffered++;
        offset += (size_t)protected_length;
        octets += payload_length;
    }
    if (drain(&to, buffered, unsent) < 0)
        goto done;
    if (failed_status) {
        PyErr_Format(PyExc_OSError, "srtp_protect failed with status %d", failed_status);
        goto done;
    }
    result = Py_BuildValue("ILOi", sequence, octets, unsent, to.error);

done:
    PyBuffer_Release(&header);
    Py_XDECREF(unsent);
    return result;
}


/* -- in ------------------------------------------------------------------------------------- */

static unsigned char in_buffer[MAX_DATAGRAM];

Py_ssize_t datapath_vp8_descriptor_length(const unsigned char *payload, Py_ssize_t length) {
    Py_ssize_t pos = 1;
    if (length < 1)
        return -1;
    if (payload[0] & 0x80) { /* X: extended control bits follow */
        if (length < 2)
            return -1;
        unsigned char extended = payload[1];
        pos = 2;
        if (extended & 0x80) { /* I: a picture id of 7 or 15 bits */
            if (length < 3)
                return -1;
            pos += (payload[2] & 0x80) ? 2 : 1;
        }
        if (extended & 0x40) /* L: TL0PICIDX */
            pos += 1;
        if (extended & 0x30) /* T or K: TID/Y/KEYIDX */
            pos += 1;
    }
    return pos > length ? -1 : pos;
}

int datapath_read(unsigned long long context_address, unsigned long long unprotect_address,
                  const void *datagram, Py_ssize_t size, RtpHeader *h) {
    void *context = (void *)(uintptr_t)context_address;
    srtp_fn unprotect = (srtp_fn)(uintptr_t)unprotect_address;
    if (context == NULL || unprotect == NULL) {
        PyErr_SetString(PyExc_ValueError, "receive: no SRTP context");
        return RTP_ERROR;
    }
    if (size < 12 || size > MAX_DATAGRAM)
        return RTP_DROPPED;
    memcpy(in_buffer, datagram, size);
    int length = (int)size;
    if (unprotect(context, in_buffer, &length) || length < 12)
        return RTP_DROPPED;

    const unsigned char *p = in_buffer;
    h->packet = p;
    h->length = length;
    if (p[0] >> 6 != 2)
        return RTP_MALFORMED;
    Py_ssize_t pos = 12 + 4 * (p[0] & 0x0F);
    Py_ssize_t end = length;
    h->extension_at = -1;
    h->extension_length = 0;
    h->extension_profile = 0;
    if (p[0] & 0x10) {
        if (pos + 4 > end)
            return RTP_MALFORMED;
        h->extension_profile = (unsigned int)p[pos] << 8 | p[pos + 1];
        h->extension_length = 4 * ((Py_ssize_t)p[pos + 2] << 8 | p[pos + 3]);
        h->extension_at = pos + 4;
        pos += 4 + h->extension_length;
    }
    if (p[0] & 0x20) {
        unsigned char padding = p[length - 1];
        if (!padding || padding > end - pos)
            return RTP_MALFORMED;
        end -= padding;
    } else if (pos > end) {
        return RTP_MALFORMED;
    }
    h->payload_type = p[1] & 0x7F;
    h->marker = p[1] >> 7;
    h->sequence = (unsigned int)p[2] << 8 | p[3];
    h->timestamp = (uint32_t)p[4] << 24 | (uint32_t)p[5] << 16 | (uint32_t)p[6] << 8 | p[7];
    h->ssrc = (uint32_t)p[8] << 24 | (uint32_t)p[9] << 16 | (uint32_t)p[10] << 8 | p[11];
    h->payload_at = pos;
    h->payload_length = end - pos;
    h->padding = length - end;
    return RTP_READ;
}

PyDoc_STRVAR(receive_doc,
"receive(srtp_context, srtp_unprotect, datagram) -> None | bytes | tuple\n"
"\n"
"Unprotect an SRTP ``datagram`` with ``srtp_unprotect(srtp_context, ...)`` (addresses) and read\n"
"its RTP header, as Track.receive does before it takes the packet in. None: it does not\n"
"authenticate, or cannot be SRTP (drop it, as aiortc does). bytes: the plain packet, whose header\n"
"the fast path does not take (not RTP version 2, an extension or padding longer than the packet).\n"
"Otherwise a tuple: (plain packet, payload type, marker, sequence number, timestamp, SSRC, header\n"
"extension, payload, padding size, VP8 descriptor length). The header extension is (profile,\n"
"bytes) on a packet with the marker set and one, else None (only a frame's last packet is read\n"
"for it). The VP8 descriptor length is what to skip of the payload if it is VP8, -1 if it would\n"
"be cut short.");

static PyObject *receive(PyObject *module, PyObject *args) {
    unsigned long long context_address, unprotect_address;
    Py_buffer datagram;
    RtpHeader h;
    if (!PyArg_ParseTuple(args, "KKy*", &context_address, &unprotect_address, &datagram))
        return NULL;
    int read = datapath_read(context_address, unprotect_address, datagram.buf, datagram.len, &h);
    PyBuffer_Release(&datagram);
    if (read == RTP_ERROR)
        return NULL;
    if (read == RTP_DROPPED)
        Py_RETURN_NONE;
    const unsigned char *p = h.packet;
    PyObject *plain = PyBytes_FromStringAndSize((const char *)p, h.length);
    if (plain == NULL || read == RTP_MALFORMED)
        return plain;
    PyObject *extension;
    if (h.marker && h.extension_at >= 0) {
        extension = Py_BuildValue("(Iy#)", h.extension_profile, p + h.extension_at, h.extension_length);
        if (extension == NULL) {
            Py_DECREF(plain);
            return NULL;
        }
    } else {
        extension = Py_NewRef(Py_None);
    }
    return Py_BuildValue("(NiiIkkNy#nn)", plain, h.payload_type, h.marker, h.sequence,
                         (unsigned long)h.timestamp, (unsigned long)h.ssrc, extension,
                         p + h.payload_at, h.payload_length, h.padding,
                         datapath_vp8_descriptor_length(p + h.payload_at, h.payload_length));
}

static PyMethodDef methods[] = {
    {"receive", receive, METH_VARARGS, receive_doc},
    {"send_frame", send_frame, METH_VARARGS, send_frame_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_datapath",
    .m_doc = "The relay's per-packet work in C: SRTP datagrams in, viewers' frames out (see _datapath.c).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__datapath(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "MAX_PACKET", MAX_PACKET) < 0 || datapath_add_track(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
