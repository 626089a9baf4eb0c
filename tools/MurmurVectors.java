// Prints Kafka Java-client partitioning vectors for tests/unit/test_murmur2.cpp.
//
//   java -cp /tmp/kjars/kafka-clients-3.9.1.jar:/tmp/kjars/slf4j-api-1.7.36.jar tools/MurmurVectors.java
//
// (Utils has a static slf4j Logger, so slf4j-api must be on the class path; without a binding
// slf4j prints a harmless NOP-logger warning on stderr.)
//
// For each key (UTF-8 bytes): Utils.murmur2(keyBytes) as a signed int and
// Utils.toPositive(murmur2) % n for n = 12, 3, 7, 100 — exactly what the Java client's
// default partitioner (BuiltInPartitioner.partitionForKey) computes for a non-null key.
// Output is C++ initialiser lines: {"key", murmur2, {p12, p3, p7, p100}},
import java.nio.charset.StandardCharsets;
import org.apache.kafka.clients.producer.internals.BuiltInPartitioner;
import org.apache.kafka.common.utils.Utils;

public class MurmurVectors {
  static final int[] COUNTS = {12, 3, 7, 100};

  static String cppLiteral(String s) {
    StringBuilder b = new StringBuilder("\"");
    boolean afterHex = false;
    for (byte x : s.getBytes(StandardCharsets.UTF_8)) {
      int c = x & 0xff;
      // A hex escape would swallow a following hex digit: split the literal there.
      if (afterHex && Character.digit(c, 16) >= 0 && c < 0x7f) b.append("\"\"");
      afterHex = false;
      if (c == '"' || c == '\\') b.append('\\').append((char) c);
      else if (c >= 0x20 && c < 0x7f) b.append((char) c);
      else { b.append(String.format("\\x%02x", c)); afterHex = true; }
    }
    return b.append('"').toString();
  }

  public static void main(String[] args) {
    String[] keys = {
      "",
      "21",
      "foobar",
      "a-little-bit-long-string",
      "a-little-bit-longer-string",
      "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
      "0190f3c2-7a1b-7c3d-8e4f-5a6b7c8d9e0f",
      "01930a5e-4b2c-7d1e-9f3a-2b4c6d8e0a1c",
      "ffffffff-ffff-7fff-bfff-ffffffffffff",
      "0190f3c2-7a1b-7c3d-8e4f-5a6b7c8d9e0f:default",
      "0190f3c2-7a1b-7c3d-8e4f-5a6b7c8d9e0f:sales-eu",
      "Zürich-Ünïcödé-日本語-🚀",
    };
    String jar = Utils.class.getProtectionDomain().getCodeSource().getLocation().getPath();
    System.out.println("// key, Utils.murmur2(utf8), {p12, p3, p7, p100}  (" + jar.substring(jar.lastIndexOf('/') + 1) + ")");
    for (String k : keys) {
      byte[] bytes = k.getBytes(StandardCharsets.UTF_8);
      int h = Utils.murmur2(bytes);
      StringBuilder line = new StringBuilder("    {").append(cppLiteral(k)).append(", ").append(h).append(", {");
      for (int i = 0; i < COUNTS.length; i++) {
        if (i > 0) line.append(", ");
        int p = Utils.toPositive(h) % COUNTS[i];
        // Cross-check against the producer's own code path (what KafkaProducer really uses).
        if (p != BuiltInPartitioner.partitionForKey(bytes, COUNTS[i]))
          throw new AssertionError("BuiltInPartitioner disagrees for " + k);
        line.append(p);
      }
      System.out.println(line.append("}},"));
    }
  }
}
