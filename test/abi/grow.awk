# grow.awk - a later minor version's header, as the ABI rule allows it to be:
# every public struct of include/skipless.h gets one more field at its end.
# The library built against it (make check-abi) must still serve a caller
# built against the older header.
/^typedef struct [a-z_0-9]+ \{/ { in_struct = 1 }
/^typedef enum/ { in_struct = 0 }
/^} skl_[a-z_0-9]+;/ && in_struct { print "    uint64_t abi_test_appended_field;"; in_struct = 0 }
{ print }
