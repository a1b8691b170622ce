"""`raw`: outputs compared as tensors only (no detection decoding)."""

from deployer.heads.base import HeadType

HEAD = HeadType(name="raw", fields=(), summary="tensor parity only")
