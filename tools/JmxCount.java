// Reads the Kafka broker's request counters over JMX (bench: Kafka requests per message).
//
//   java tools/JmxCount.java HOST:PORT          (JDK 11+ single-file launch; no build step)
//
// For every line read on stdin it prints one snapshot, then a line "end":
//   <request type> <count>     e.g. "Produce 12345", summed over the counter's version tags
// from kafka.network:type=RequestMetrics,name=RequestsPerSec,request=*,version=* (attribute
// Count: requests the broker has received since it started). The connection stays open between
// snapshots, so taking one costs milliseconds, not a JVM start. EOF on stdin ends the program.
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.util.Map;
import java.util.TreeMap;
import javax.management.MBeanServerConnection;
import javax.management.ObjectName;
import javax.management.remote.JMXConnector;
import javax.management.remote.JMXConnectorFactory;
import javax.management.remote.JMXServiceURL;

public class JmxCount {
  public static void main(String[] args) throws Exception {
    if (args.length != 1) {
      System.err.println("usage: java JmxCount.java HOST:PORT");
      System.exit(2);
    }
    JMXServiceURL url = new JMXServiceURL("service:jmx:rmi:///jndi/rmi://" + args[0] + "/jmxrmi");
    try (JMXConnector connector = JMXConnectorFactory.connect(url)) {
      MBeanServerConnection mbs = connector.getMBeanServerConnection();
      ObjectName pattern = new ObjectName("kafka.network:type=RequestMetrics,name=RequestsPerSec,*");
      BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
      System.out.println("ready");
      System.out.flush();
      while (in.readLine() != null) {
        Map<String, Long> counts = new TreeMap<>();
        for (ObjectName name : mbs.queryNames(pattern, null)) {
          String request = name.getKeyProperty("request");
          if (request == null) continue;
          Object count = mbs.getAttribute(name, "Count");
          counts.merge(request, ((Number) count).longValue(), Long::sum);
        }
        for (Map.Entry<String, Long> e : counts.entrySet()) System.out.println(e.getKey() + " " + e.getValue());
        System.out.println("end");
        System.out.flush();
      }
    }
  }
}
