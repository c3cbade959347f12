/* What _datapath.c (the module, sending, reading RTP headers) and _track.c (a publisher's track
 * received in C) share. */

#ifndef ZHIHUI_DATAPATH_H
#define ZHIHUI_DATAPATH_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>

typedef int (*srtp_fn)(void *context, void *packet, int *length); /* srtp_protect, srtp_unprotect */

#define MAX_DATAGRAM 2048 /* aiortc_compat.LeanSrtp.BUFFER_BYTES */

/* An RTP packet as unprotected into a module buffer: valid until the next call that reads one. */
typedef struct {
    const unsigned char *packet;
    int length;
    int payload_type;
    int marker;
    unsigned int sequence;
    uint32_t timestamp;
    uint32_t ssrc;
    Py_ssize_t payload_at;
    Py_ssize_t payload_length;
    Py_ssize_t padding;
    unsigned int extension_profile;
    Py_ssize_t extension_at; /* -1 without a header extension */
    Py_ssize_t extension_length;
} RtpHeader;

enum {
    RTP_ERROR = -1,     /* a Python exception is set */
    RTP_DROPPED = 0,    /* it does not authenticate, or cannot be SRTP */
    RTP_MALFORMED = 1,  /* plain, but its header is not one the fast path takes */
    RTP_READ = 2,
};

/* Unprotect ``datagram`` and read its RTP header into ``header``. */
int datapath_read(unsigned long long context_address, unsigned long long unprotect_address,
                  const void *datagram, Py_ssize_t size, RtpHeader *header);

/* Bytes before a VP8 payload's data (RFC 7741 4.2), or -1 when its descriptor is cut short. */
Py_ssize_t datapath_vp8_descriptor_length(const unsigned char *payload, Py_ssize_t length);

/* Adds the Track type to the module. */
int datapath_add_track(PyObject *module);

#endif
