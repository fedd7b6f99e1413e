import { useCounter } from "@weft/react";

export function Budget() {
  const [budget, increment] = useCounter("budget");
  return (
    <div className="budget">
      Budget: <strong data-testid="budget">{budget}</strong> €
      <button data-testid="budget-down" onClick={() => void increment(-50)}>−50</button>
      <button data-testid="budget-up" onClick={() => void increment(50)}>+50</button>
    </div>
  );
}
