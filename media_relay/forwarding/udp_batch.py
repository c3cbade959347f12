"""Datagrams to one address in as few system calls as the kernel allows.

A viewer gets each frame as a run of RTP packets (about ten for a 720p video frame), and one
``sendto`` per packet made the system calls a quarter of the relay's time. Linux (4.18 and later)
takes a run of datagrams of one size in a single ``sendmsg`` with UDP generic segmentation offload
(``UDP_SEGMENT``): the kernel cuts the buffer into datagrams of that size (the last may be
shorter) and they leave as if sent one by one. A video frame's packets are all of one size but the
last, so a frame usually goes in one call.

Where the kernel refuses (another system, an old kernel, a device without it), or the socket is
full, the datagrams go through the asyncio transport as before: it queues what the socket does not
take, and its queue is what the forwarder watches to drop frames for a viewer that falls behind.

A whole frame (:meth:`UdpBatchSender.send_frame`) is made, protected and sent in C
(``_datapath.c``): its packets' headers, the history, SRTP and the ``sendmmsg`` call, with no Python
per packet.
"""

from __future__ import annotations

import _socket
import errno
import logging
import os
import socket
import struct
import sys
from typing import Any, Protocol

from media_relay.forwarding import _datapath
from media_relay.forwarding.rtp_out import packetize

__all__ = ["SrtpContext", "UdpBatchSender"]

logger = logging.getLogger(__name__)

UDP_SEGMENT = 103
"""``linux/udp.h``: the size of each datagram in a buffer sent with segmentation offload."""
MAX_SEGMENTS = 64  # the kernel's UDP_MAX_SEGMENTS (64; 128 since Linux 6.x)
MAX_BYTES = 60_000  # under the 64 KiB a single send can carry, with room for the headers

_SEGMENT_SIZE = struct.Struct("=H")
_FULL = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS})
"""A socket that takes nothing more for now: not a refusal of segmentation offload."""


class SrtpContext(Protocol):
    """An SRTP session that C can use directly (``aiortc_compat.LeanSrtp``)."""

    @property
    def address(self) -> int:
        """Where libsrtp's context (``srtp_t``) is."""
        ...

    @property
    def protect_address(self) -> int:
        """Where ``srtp_protect`` is, in the libsrtp that made the context."""
        ...

    def protect(self, packet: bytes) -> bytes: ...


class UdpBatchSender:
    """Sends through ``transport``'s socket (an asyncio datagram transport), batching runs of
    equal-sized datagrams; what it cannot send goes through ``transport.sendto``."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        sock = transport.get_extra_info("socket")
        self._segmenting = sys.platform == "linux" and sock is not None
        self._native = self._segmenting
        """Whether whole frames go through ``_datapath`` (Linux's ``sendmmsg``, a real socket)."""
        self._native_address: tuple[Any, ...] | None = None
        """The address ``_datapath`` was last found to take (aioice makes a new tuple each time)."""
        if sock is not None:
            self._fd = sock.fileno()
            self._family = sock.family
        self.calls = 0
        """``sendmsg`` calls that carried more than one datagram."""

    @property
    def transport(self) -> Any:
        return self._transport

    def send(self, datagrams: list[bytes], address: tuple[Any, ...]) -> None:
        transport = self._transport
        if (
            not self._segmenting
            or len(datagrams) < 2
            or transport.is_closing()
            or transport.get_write_buffer_size()  # keep the order: join the queue
        ):
            for data in datagrams:
                transport.sendto(data, address)
            return
        # The transport's own socket, not a duplicate: nothing to close, and it cannot outlive it.
        sock = _socket.socket(self._family, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK, 0, self._fd)
        start = 0
        try:
            count = len(datagrams)
            while start < count:
                size = len(datagrams[start])
                limit = min(count, start + MAX_SEGMENTS, start + MAX_BYTES // max(size, 1))
                end = start + 1
                while end < limit and len(datagrams[end]) == size:
                    end += 1
                if end < limit and len(datagrams[end]) < size:
                    end += 1  # a shorter datagram may end the run
                if end - start == 1:
                    sock.sendto(datagrams[start], address)
                else:
                    ancillary = [(socket.SOL_UDP, UDP_SEGMENT, _SEGMENT_SIZE.pack(size))]
                    sock.sendmsg([b"".join(datagrams[start:end])], ancillary, 0, address)
                    self.calls += 1
                start = end
        except BlockingIOError:
            self._send_rest(datagrams, start, address)
        except OSError as error:
            # No segmentation offload here, or not for this size or route: never again on this
            # socket. The datagrams of the refused call go the plain way.
            self._segmenting = False
            logger.info("UDP segmentation offload refused (%s): sending datagrams one by one", error)
            self._send_rest(datagrams, start, address)
        finally:
            sock.detach()

    def send_frame(
        self,
        address: tuple[Any, ...],
        srtp: SrtpContext,
        header: bytes,
        payloads: tuple[bytes, ...],
        sequence: int,
        marker: int,
        history: list[bytes | None],
    ) -> tuple[int, int]:
        """A frame's packets (see ``rtp_out.RtpOutput.send_frame``), protected with ``srtp`` and
        sent to ``address``; the next sequence number and the payload octets."""
        transport = self._transport
        if (
            not self._native
            or (address != self._native_address and not self._takes(address))
            or transport.is_closing()
            or transport.get_write_buffer_size()
        ):
            packets, sequence, octets = packetize(header, payloads, sequence, marker, history)
            protect = srtp.protect
            self.send([protect(data) for data in packets], address)
            return sequence, octets
        sequence, octets, unsent, error = _datapath.send_frame(
            self._fd,
            self._family,
            address,
            self._segmenting,
            srtp.address,
            srtp.protect_address,
            header,
            payloads,
            sequence,
            marker,
            history,
        )
        if error and error not in _FULL and self._segmenting:
            self._segmenting = False
            logger.info(
                "UDP segmentation offload refused (%s): sending datagrams one by one", os.strerror(error)
            )
        for data in unsent:  # in order, after what the socket took: the transport queues them
            transport.sendto(data, address)
        return sequence, octets

    def _takes(self, address: tuple[Any, ...]) -> bool:
        """Whether ``_datapath`` takes ``address`` as it is: a numeric address of the socket's family
        (an IPv6 zone, ``fe80::1%eth0``, it does not read)."""
        try:
            socket.inet_pton(self._family, address[0])
        except (OSError, TypeError, IndexError):
            return False
        self._native_address = address
        return True

    def _send_rest(self, datagrams: list[bytes], start: int, address: tuple[Any, ...]) -> None:
        for data in datagrams[start:]:
            self._transport.sendto(data, address)
