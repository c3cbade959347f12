/* A viewer's frame out, in C: the relay's per-packet send path (issue 3).
 *
 * For each RTP payload of a frame: the viewer's header in front of it (its payload type, SSRC,
 * timestamp and the next sequence number; the marker on the last packet), the plain packet kept
 * in the retransmission history, the packet SRTP-protected in place, and then the frame's
 * datagrams written to the viewer's socket in one sendmmsg(2), runs of equal size as single
 * messages with UDP generic segmentation offload (UDP_SEGMENT) where the caller allows it.
 *
 * It does what rtp_out.RtpForwarder._send, aiortc_compat.SenderOutput.send and
 * udp_batch.UdpBatchSender.send do in Python, with the same bytes out (tests/media_relay/
 * test_rtpsend.py compares them), for about a third of the CPU time (bench/README.md).
 *
 * SRTP: the caller passes the address of a libsrtp 2 context (srtp_t) and of libsrtp's own
 * srtp_protect, both taken from pylibsrtp's binding (aiortc_compat.LeanSrtp), so that the session
 * aiortc keyed is the one used, through the library that made it; nothing is linked here.
 *
 * The GIL is held throughout: the buffer below is this module's one scratch space.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

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

typedef int (*srtp_protect_fn)(void *context, void *packet, int *length);

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
    to->sent += first_datagram[done];
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
        to->sent = 0;
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
    srtp_protect_fn protect = (srtp_protect_fn)(uintptr_t)protect_address;
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

static PyMethodDef methods[] = {
    {"send_frame", send_frame, METH_VARARGS, send_frame_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_rtpsend",
    .m_doc = "A viewer's frame out: RTP headers, SRTP protection and batched UDP sends in C.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__rtpsend(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "MAX_PACKET", MAX_PACKET) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
