# The Corral server image. The build context is a root filesystem that cluster/build.sh assembles:
# the corral binary, the shared libraries it links (at their own paths, with the dynamic loader),
# and a minimal /etc (passwd, group, nsswitch.conf with "hosts: files dns").
FROM scratch
COPY . /
ENV CORRAL_DATA_DIR=/var/lib/corral \
    CORRAL_LISTEN=0.0.0.0:7070 \
    CORRAL_PEER_LISTEN=0.0.0.0:7071 \
    CORRAL_HTTP=0.0.0.0:7072
EXPOSE 7070 7071 7072
ENTRYPOINT ["/usr/local/bin/corral"]
CMD ["server"]
