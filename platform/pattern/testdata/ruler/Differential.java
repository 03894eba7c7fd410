// Differential oracle: reads JSON lines {"p": pattern, "e": event} on stdin
// and answers each with one line: "invalid" (the pattern does not compile),
// "true"/"false" (rulesForJSONEvent matched or not) or "event-error".
// With the argument "complexity" each input line is {"p": pattern} and the
// answer is event-ruler's machine complexity (the measure behind
// EventBridge's "rule is too complex" error for wildcards).
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import software.amazon.event.ruler.Machine;
import software.amazon.event.ruler.MachineComplexityEvaluator;

public class Differential {
    public static void main(String[] args) throws Exception {
        boolean complexity = args.length > 0 && args[0].equals("complexity");
        ObjectMapper om = new ObjectMapper();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        PrintWriter out = new PrintWriter(System.out, false, StandardCharsets.UTF_8);
        String line;
        while ((line = in.readLine()) != null) {
            JsonNode c = om.readTree(line);
            String p = c.get("p").asText();
            Machine m = new Machine();
            try {
                m.addRule("r", p);
            } catch (Exception | Error e) {
                out.println("invalid");
                out.flush();
                continue;
            }
            if (complexity) {
                out.println(m.evaluateComplexity(new MachineComplexityEvaluator(10000)));
                out.flush();
                continue;
            }
            try {
                out.println(m.rulesForJSONEvent(c.get("e").asText()).isEmpty() ? "false" : "true");
            } catch (Exception | Error e) {
                out.println("event-error");
            }
            out.flush();
        }
    }
}
