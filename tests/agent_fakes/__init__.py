"""Test doubles for the queue agent, all real servers over real sockets: fake AUTOMATIC1111 and
ComfyUI runtimes, a latency-adding TCP proxy, and the AWS resources of one runtime on moto."""
